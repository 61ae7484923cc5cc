"""Packaging does what the README says: a light core with the heavy parts as extras, one version, a
``python -m wmsim`` entry point, the shipped ONNX graphs in the package data, and a venv holding only
``wmsim[onnx]`` (no torch) that runs a shipped dream through ``gym.make``."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import wmsim

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "torch",
    "pygame",
    "matplotlib",
    "dm_control",
    "mujoco",
    "ale-py",
    "stable-baselines3",
    "tensorboard",
)
#: The torch-free venv `make setup` builds (scripts/setup.sh); WMSIM_ONNX_PYTHON points elsewhere.
ONNX_PYTHON = Path(os.environ.get("WMSIM_ONNX_PYTHON", ROOT / ".venv-onnx" / "bin" / "python")).absolute()


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())  # type: ignore[no-any-return]


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()


def test_the_core_is_light_and_the_heavy_parts_are_extras() -> None:
    project = _pyproject()["project"]
    core = {_name(r) for r in project["dependencies"]}
    assert core == {"numpy", "gymnasium", "huggingface-hub", "safetensors"}
    extras = project["optional-dependencies"]
    assert {"onnx", "torch", "train", "atari", "dmc", "sb3", "play", "all", "dev"} <= set(extras)
    assert [_name(r) for r in extras["onnx"]] == ["onnxruntime"]
    every = {_name(r) for name, reqs in extras.items() if name not in ("dev", "all") for r in reqs}
    assert set(HEAVY) <= every, "each heavy dependency is in some extra"
    assert extras["all"] == ["wmsim[onnx,torch,train,atari,dmc,sb3,play]"]
    assert "wmsim[all]" in extras["dev"]  # what scripts/setup.sh installs: everything
    torch = next(r for r in extras["torch"] if _name(r) == "torch")
    assert ">=2.2" in torch and "<3" in torch, "admits the CPU build 2.13.0 that setup.sh installs first"


def test_the_version_is_written_once() -> None:
    pyproject = _pyproject()
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "wmsim.__version__"}
    assert wmsim.__version__.count(".") == 2


def test_python_m_wmsim_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wmsim", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: wmsim" in done.stdout and "quickstart" in done.stdout


def test_the_package_data_ships_every_pretrained_file() -> None:
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["wmsim"]
    shipped = [p.relative_to(ROOT / "wmsim").as_posix() for p in (ROOT / "wmsim" / "pretrained").rglob("*")]
    files = [name for name in shipped if (ROOT / "wmsim" / name).is_file()]
    missed = [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert not missed, missed
    assert any(name.endswith("CartPole/onnx/transition.onnx") for name in files)


TORCH_FREE = """
import importlib.metadata, importlib.util, json, sys
import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
import wmsim
from wmsim.dream.ort import OrtPolicy

assert importlib.util.find_spec("torch") is None, "torch is installed"
env = gym.make("wmsim/CartPole-dream", backend="onnxruntime", obs_mode="decoded")
check_env(env.unwrapped, skip_render_check=True)
vec = gym.make_vec("wmsim/CartPole-dream", num_envs=8, backend="onnxruntime", seed=0)
policy = OrtPolicy("CartPole", seed=0)
obs, _ = vec.reset(seed=0)
total = np.zeros(8)
for _ in range(50):
    obs, reward, terminated, truncated, _ = vec.step(policy(obs))
    total += reward
print(json.dumps({
    "file": wmsim.__file__,
    "version": wmsim.__version__,
    "installed": importlib.metadata.version("wmsim"),
    "backend": vec.backend,
    "mean_return": float(total.mean()),
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "stable_baselines3", "pygame")),
}))
"""


@pytest.mark.slow
def test_a_shipped_dream_runs_where_only_wmsim_onnx_is_installed(tmp_path: Path) -> None:
    if not ONNX_PYTHON.is_file():
        message = (
            f"no torch-free venv at {ONNX_PYTHON}: `make setup` (scripts/setup.sh) builds .venv-onnx with"
            " `pip install -e '.[onnx]'`, or point WMSIM_ONNX_PYTHON at such a Python"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # CI's setup step builds it: its absence there is a failure
        pytest.skip(message)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": ""}
    done = subprocess.run(
        [str(ONNX_PYTHON), "-c", TORCH_FREE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(ROOT / "wmsim")  # this tree's wmsim
    assert report["version"] == report["installed"] == wmsim.__version__
    assert report["backend"] == "onnxruntime" and report["modules"] == []
    assert report["mean_return"] > 10  # the shipped policy balances the dreamed pole (reward 1 per step)
