"""The training loop: resume after SIGKILL, refusal of another run's logdir, CLI errors, pixel smoke."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.checkpoint import drop_metrics_after
from agents.cli import main as cli_main
from agents.config import TrainConfig, train_preset
from agents.replay import Replay
from agents.train import RunMismatchError, Trainer, train
from wmsim.bundle import load_bundle
from wmsim.data import random_policy, rollout
from wmsim.envs import make_env
from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer, batch_to_torch

ROOT = Path(__file__).resolve().parents[2]


def _tiny(logdir: Path, **changes: object) -> TrainConfig:
    config = dataclasses.replace(train_preset("tiny"), logdir=str(logdir), steps=600, checkpoint_every=300)
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _train_cmd(logdir: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agents.cli",
        "train",
        "--preset",
        "tiny",
        "--env",
        "CartPole-v1",
        "--steps",
        str(steps),
        "--checkpoint_every",
        "400",
        "--logdir",
        str(logdir),
        "--quiet",
        "--no-eval",
    ]


def test_sigkill_then_rerun_resumes_from_checkpoint_with_same_replay(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        _train_cmd(logdir, 100_000), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    latest = logdir / "checkpoints" / "latest"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and not (
            latest.exists() and latest.read_text().strip() >= "step-000000000800"
        ):
            time.sleep(0.05)
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert latest.exists(), "no checkpoint was written within 120 s"
    ckpt = logdir / "checkpoints" / latest.read_text().strip()
    state = json.loads((ckpt / "state.json").read_text())
    step, replay_total = state["step"], state["state"]["replay_total"]
    before = _contents_at(logdir / "replay", replay_total)

    result = subprocess.run(
        _train_cmd(logdir, step + 200), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert f"resumed from step {step}" in result.stdout
    assert f"trained {step + 200} env steps" in result.stdout
    after = _contents_at(logdir / "replay", replay_total)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    lines = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["env_step"] == step + 200
    logged = [line["env_step"] for line in lines if "eval_return" not in line]
    assert logged == sorted(set(logged)), "rows logged after the checkpoint by the killed run were kept"
    load_bundle(logdir / "bundle")


def test_drop_metrics_after_keeps_one_row_per_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"update": u, "loss": 1.0 / u}) for u in (50, 100, 150, 200)]
    path.write_text("\n".join(rows) + '\n{"update": 25')  # the kill cut the last row short
    assert drop_metrics_after(path, "update", 100) == 3
    assert [json.loads(line)["update"] for line in path.read_text().splitlines()] == [50, 100]
    assert drop_metrics_after(path, "update", 100) == 0
    assert drop_metrics_after(tmp_path / "absent.jsonl", "update", 100) == 0


def _contents_at(directory: Path, total: int) -> dict[str, np.ndarray]:
    replay = Replay(directory, capacity=100_000, chunk_length=128)
    contents = replay.contents()
    start = replay.total_steps - len(replay)
    return {key: value[: total - start] for key, value in contents.items()}


def test_resumed_run_restores_weights_and_counters(tmp_path: Path) -> None:
    config = _tiny(tmp_path / "run", steps=300)
    first = train(config, progress=False, evaluate=False)
    assert first.env_steps == 300 and first.updates > 0
    trainer = Trainer(dataclasses.replace(config, steps=400), progress=False)
    assert trainer.resumed_from == 300 and trainer.updates == first.updates
    weights = load_bundle(first.bundle).model.state_dict()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value.cpu(), weights[name]), name
    second = trainer.run()
    assert second.env_steps == 400 and second.updates > first.updates


def test_logdir_of_another_run_is_refused(tmp_path: Path) -> None:
    train(_tiny(tmp_path / "run", steps=50), progress=False, evaluate=False)
    with pytest.raises(RunMismatchError, match=r"env: 'CartPole-v1' -> 'Pendulum-v1'.*new --logdir"):
        Trainer(_tiny(tmp_path / "run", env="Pendulum-v1"), progress=False)
    # Operational options (steps, device, logging) may change on resume.
    Trainer(_tiny(tmp_path / "run", steps=80, log_every=7), progress=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--preset", "smal"], "Did you mean 'small'"),
        (["train", "--preset", "tiny", "--env", "NoSuchEnv-v0"], "unknown environment id 'NoSuchEnv-v0'"),
        (["train", "--preset", "tiny", "--device", "tpu9"], "device 'tpu9'"),
        (["evaluate", "/nonexistent/bundle"], "unknown model '/nonexistent/bundle': pass a bundle directory"),
    ],
)
def test_cli_bad_input_gets_a_clear_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[0] == "train":
        argv = [*argv, "--logdir", str(tmp_path / "x"), "--quiet"]
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


def test_evaluate_takes_a_model_name_and_never_writes_into_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wmsim.registry import resolve_model_dir

    shipped = resolve_model_dir("CartPole") / "openloop.json"
    before = shipped.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert cli_main(["evaluate", "CartPole", "--episodes", "2", "--horizon", "3", "--device", "cpu"]) == 0
    assert (tmp_path / "runs" / "evaluate-CartPole" / "openloop.json").exists()
    assert shipped.read_bytes() == before
    assert "openloop.json" in capsys.readouterr().out


def test_cli_options_are_generated_from_the_config(tmp_path: Path) -> None:
    from agents.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        [
            "train",
            "--preset",
            "small",
            "--model.rssm.deter",
            "64",
            "--batch_size",
            "3",
            "--logdir",
            str(tmp_path),
        ]
    )
    config = config_from_args(args)
    assert config.model.rssm.deter == 64 and config.batch_size == 3
    assert config.model.rssm.hidden == train_preset("small").model.rssm.hidden


@pytest.mark.parametrize("env_id", ["atari/Pong", "dmc/cartpole-swingup"])
def test_pixel_world_model_trains_losses_finite_and_falling(env_id: str) -> None:
    torch.manual_seed(0)
    env = make_env(env_id, seed=0)
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    env.action_space.seed(0)
    episode = rollout(env, random_policy(env.action_space), io, seed=0, max_steps=64)
    env.close()
    batch = {k: v[None, :32] for k, v in episode.items()}
    assert batch["obs"].shape[2:4] == (64, 64)
    config = train_preset("tiny").model
    model = WorldModel(config, io)
    trainer = WorldModelTrainer(model)
    tensors = batch_to_torch(batch, "cpu")
    losses = []
    for _ in range(25):
        _, metrics = trainer.train_step(tensors)
        losses.append(float(metrics["model_loss"]))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])


def test_pong_training_loop_smoke(tmp_path: Path) -> None:
    config = dataclasses.replace(
        _tiny(
            tmp_path / "pong",
            env="atari/Pong",
            steps=120,
            prefill=60,
            checkpoint_every=120,
            log_every=60,
            seq_len=8,
            batch_size=2,
        )
    )
    result = train(config, progress=False, evaluate=False)
    assert result.updates > 0 and np.isfinite(result.last_metrics["model_loss"])
    bundle = load_bundle(result.bundle)
    assert bundle.model.io.obs_shape == (64, 64, 1) and bundle.env_spec.name == "Pong"


def test_bench_train_times_full_updates_with_their_arithmetic(tmp_path: Path) -> None:
    from agents.cli import main

    out = tmp_path / "bench.json"
    argv = ["bench", "train", "--presets", "tiny", "--updates", "2", "--gather", "--phases"]
    assert main([*argv, "--precision", "fp32", "bf16", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["peak_gflop_per_s"]["fp32"] > 0 and result["peak_gflop_per_s"]["bf16"] > 0
    rows = result["rows"]
    assert [(r["path"], r["precision"]) for r in rows] == [
        ("dense", "fp32"),
        ("gather", "fp32"),
        ("dense", "bf16"),
        ("gather", "bf16"),
    ]
    for row in rows:
        assert row["updates_per_s"] > 0 and row["gflop_per_update"] > 0
        assert 0 < row["peak_fraction"] < 1.5 and row["actor_critic_s"] > 0
        phases = row["phases_s"]
        for phase in ("encoder", "observe loop (RSSM filter)", "decoder", "optimiser"):
            assert phases[f"world model: {phase}"] > 0, phase
        for phase in ("imagination: actor", "imagination: latent transition", "target critic", "critic"):
            assert phases[f"actor-critic: {phase}"] > 0, phase
        # the phases are parts of the stages: together no more than the stages' time (+ timer noise)
        assert sum(phases.values()) < 3 * (row["world_model_s"] + row["actor_critic_s"])
    table = out.with_suffix(".md").read_text()
    assert "| tiny | dense | fp32 |" in table and "| world model: observe loop (RSSM filter) |" in table
