"""The main job: PPO trained only inside the shipped CartPole dream beats a random policy in the real
env by a wide margin, and the run writes its table, learning curve and dream-vs-real GIF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import main


@pytest.mark.slow
def test_quickstart_on_the_shipped_cartpole_beats_random(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "qs"
    assert main(["quickstart", "--env", "CartPole", "--episodes", "10", "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "real return, PPO trained in the dream" in table and "dream steps/s" in table
    result = json.loads((out / "quickstart.json").read_text())
    assert result["random"]["mean"] < 40
    # PPO on the dream's decoded observations (the quickstart's choice for vector models), played on
    # the real states. `wmsim sweep quickstart-cartpole` (5 seeds, 2-core AMD EPYC): 500 / 500 / 337 /
    # 277 / 489 over 20 episodes each; random play about 22.
    assert result["agent"]["mean"] >= 200 and result["agent"]["mean"] > result["random"]["mean"] + 150, result
    for name in ("learning_curve.png", "dream_vs_real.gif", "ppo_dream.zip"):
        assert (out / name).stat().st_size > 1000, name
    assert result["curve"] and result["curve"][-1][0] <= result["dream_steps"]


@pytest.mark.slow
def test_quickstart_on_the_shipped_pong_returns_balls(tmp_path: Path) -> None:
    """`make demo`'s command: PPO trained only in the shipped Pong dream does better than random in 10
    seeded real games. Measured on a 2-core AMD EPYC: -18.8 with torch's 2 threads; over seeds 0-4 on
    one thread (`wmsim sweep quickstart-pong`) -15.3 / -17.0 / -17.5 / -15.9 / -16.6. Random play
    scores -20.5 +- 0.7 on these games; a dream whose policy never returns the ball gives -21."""
    out = tmp_path / "qs"
    assert main(["quickstart", "--env", "Pong", "--seed", "1", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "quickstart.json").read_text())
    assert result["random"]["mean"] < -19.5
    assert result["agent"]["mean"] >= -20.0 and result["agent"]["mean"] > result["random"]["mean"], result
