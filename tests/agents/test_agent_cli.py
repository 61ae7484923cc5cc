"""`wmsim train --dream` and `wmsim eval`: the policy goes into the bundle and plays the real env; bad
input gets clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from agents.cli import main as cli_main
from agents.config import train_preset
from agents.evaluation import evaluate_policy_in_real
from agents.train import TrainResult, train
from wmsim.bundle import load_bundle


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    config = dataclasses.replace(
        train_preset("tiny"), steps=400, logdir=str(tmp_path_factory.mktemp("t") / "r"), checkpoint_every=400
    )
    return train(config, progress=False, evaluate=False)


def test_agent_loop_writes_policy_and_eval_returns(tiny_run: TrainResult) -> None:
    bundle = load_bundle(tiny_run.bundle)
    assert bundle.has_policy and bundle.policy_config is not None
    assert bundle.policy_config["kind"] == "dreamerv2-actor"
    assert tiny_run.eval_returns and tiny_run.eval_returns[-1][0] == 400
    result = evaluate_policy_in_real(bundle, episodes=2, seed=0)
    assert len(result["returns"]) == 2 and result["mean"] > 0


def test_train_in_dream_then_eval(
    tiny_run: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dreamed"
    code = cli_main(
        [
            "train",
            "--preset",
            "tiny",
            "--dream",
            str(tiny_run.bundle),
            "--dream-updates",
            "3",
            "--dream-pool",
            "8",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    bundle = load_bundle(out)
    assert bundle.has_policy and bundle.info["dream_training"]["updates"] == 3
    assert cli_main(["eval", str(out), "--episodes", "2"]) == 0
    assert "DreamerV2 policy in gym/CartPole-v1: return" in capsys.readouterr().out


def test_train_in_dream_from_replay_starts(
    tiny_run: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dreamed"
    args = ["train", "--preset", "tiny", "--dream", str(tiny_run.bundle), "--dream-updates", "3"]
    args += ["--out", str(out), "--quiet"]
    assert cli_main([*args, "--dream-replay", str(tiny_run.logdir / "replay")]) == 0
    training = load_bundle(out).info["dream_training"]
    assert training["starts"] == "replay" and training["replay_steps"] >= 400  # env steps + resets
    assert (training["batch_size"], training["seq_len"]) == (4, 16)
    # opening the replay evicted none of its chunks
    assert len(list((tiny_run.logdir / "replay").glob("*.npz"))) > 0
    # an empty directory, and a replay of another env, are refused with the fix
    (tmp_path / "empty").mkdir()
    assert cli_main([*args, "--dream-replay", str(tmp_path / "empty")]) == 2
    assert "holds no replay chunks" in capsys.readouterr().err
    from agents.replay import Replay

    other = Replay(tmp_path / "other", capacity=64, chunk_length=32)
    for _ in range(64):
        other.add({"obs": np.zeros(3, np.float32), "action": np.zeros(2, np.float32), "reward": 0.0})
    other.flush()
    assert cli_main([*args, "--dream-replay", str(tmp_path / "other")]) == 2
    assert "its obs steps have shape (3,), the model of gym/CartPole-v1 takes (4,)" in capsys.readouterr().err


def test_eval_bad_input(tiny_run: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = load_bundle(tiny_run.bundle)
    # A bundle without a policy.
    from wmsim.bundle import save_bundle

    save_bundle(tmp_path / "nopolicy", bundle.model, bundle.env_spec, bundle.spaces, bundle.start_states)
    assert cli_main(["eval", str(tmp_path / "nopolicy")]) == 2
    assert "holds no policy" in capsys.readouterr().err
    # A real env that is not the one the model was trained on.
    assert cli_main(["eval", str(tiny_run.bundle), "--env", "Acrobot-v1"]) == 2
    assert "does not match the bundle's env gym/CartPole-v1" in capsys.readouterr().err
    # An SB3 zip that does not exist, and a video of a vector env.
    assert cli_main(["eval", str(tiny_run.bundle), "--sb3", str(tmp_path / "none.zip")]) == 2
    assert "no SB3 model" in capsys.readouterr().err
    assert cli_main(["eval", str(tiny_run.bundle), "--video", str(tmp_path / "v.gif")]) == 2
    assert "observes vectors" in capsys.readouterr().err


def test_eval_plays_an_sb3_zip(tiny_run: TrainResult, tmp_path: Path) -> None:
    from agents.sb3 import train_in_dream

    agent = train_in_dream(tiny_run.bundle, algo="A2C", total_timesteps=64, num_envs=4, seed=0)
    agent.save(tmp_path / "a2c.zip")
    result = evaluate_policy_in_real(tiny_run.bundle, sb3=str(tmp_path / "a2c.zip"), algo="A2C", episodes=2)
    assert result["policy"].startswith("SB3 A2C") and len(result["returns"]) == 2


@pytest.mark.parametrize("mode", [True, False], ids=["mode", "sampled"])
def test_eval_is_reproducible_under_its_seeds(mode: bool, capsys: pytest.CaptureFixture[str]) -> None:
    # The posterior samples of the filter (and sampled actions) come from the policy's own seeded
    # generator, so the same command prints the same returns, to the last digit.
    args = ["eval", "CartPole", "--episodes", "3", "--seed", "7"] + ([] if mode else ["--sample"])
    printed = []
    for _ in range(2):
        assert cli_main(args) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and "return" in printed[0]
    first = evaluate_policy_in_real("CartPole", episodes=3, seed=7, mode=mode)
    second = evaluate_policy_in_real("CartPole", episodes=3, seed=7, mode=mode)
    assert first["returns"] == second["returns"]
