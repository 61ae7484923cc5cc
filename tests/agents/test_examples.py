"""Every example runs top to bottom in its smoke mode (tiny budgets), offline, outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMOKE = sorted(p.name for p in EXAMPLES.glob("*.py") if "--smoke" in p.read_text())


def test_every_example_has_a_smoke_mode() -> None:
    missing = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in SMOKE)
    assert set(missing) <= {"dream_torch_api.py", "sb3_cartpole_dream.py"}, missing


@pytest.mark.slow
@pytest.mark.parametrize("example", SMOKE)
def test_example_runs_in_smoke_mode(example: str, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example), "--smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
