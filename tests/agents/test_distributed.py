"""Data-parallel training under torchrun (gloo, CPU) and collection from vector envs.

The main check: two ranks train the tiny CartPole world model and actor-critic
(tests/agents/ddp_worker.py), each on its half of the global batch from its own replay shard. Their
weights must be bit-identical, and the loss curve must match one process that trains on the union of
the two ranks' batches (rank 0's rows, then rank 1's) from the same initial weights, with the same
latent-sampling noise (ddp_worker.SharedNoise), within a relative 1e-5.

Why 1e-5: the two runs do the same arithmetic in a different order (the mean of two half-batch means
against one mean; an all-reduced sum of two gradients against one backward pass), so fp32 rounding
makes them differ by about 1e-7 relative here. Training without sharing gradients (the same check
against rank 0's half alone) misses by tens of percent, so the tolerance separates the two by
four orders of magnitude either way.

Free nats are off in this comparison: DreamerV2 clamps the *batch-mean* KL at ``kl_free``, and a
rank sees only its half of the batch, so with the clamp active the ranks' gradient can differ from
the global batch's where one half is above the threshold and the other below (see docs/distributed.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agents.cli import main as cli_main
from agents.config import train_preset
from agents.distributed import DistributedError, local_batch
from agents.train import Trainer, train
from wmsim.bundle import load_bundle
from wmsim.envs import make_env
from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer, batch_to_torch

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import SharedNoise, worker_config

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
LOSS_RTOL = 1e-5
LAUNCH_TIMEOUT = 180  # seconds; every failure mode below must end long before this


def torchrun(args: list[str], timeout: float = LAUNCH_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Two CPU ranks on a free port of this machine (torchrun's standalone rendezvous)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def run_worker(logdir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return torchrun([str(WORKER), "--logdir", str(logdir), "--out", str(out), *extra])


def ranks(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """In-process training on one thread, as each rank under torchrun: the tiny model gains nothing
    from more, and on a busy 2-core machine two threads per process are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 env steps (80 per rank) of the test config, every batch and loss recorded."""
    root = tmp_path_factory.mktemp("ddp")
    result = run_worker(root / "run", root / "first", "--record")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def single_process(batches: list[dict[str, np.ndarray]]) -> tuple[list[float], WorldModel]:
    """Train the test config's world model in this process on ``batches``; returns losses and model."""
    config = worker_config("unused")
    env = make_env(config.env)
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    torch.manual_seed(config.seed)
    model = WorldModel(config.model, io)
    trainer = WorldModelTrainer(model, precision="fp32")
    noise, losses = SharedNoise(rank=0, world_size=1), []
    for batch in batches:
        with noise.active():
            _, metrics = trainer.train_step(batch_to_torch(batch, "cpu"))
        losses.append(float(metrics["model_loss"]))
    return losses, model


def recorded(out: Path) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """Per update: rank 0's batch rows followed by rank 1's, and the ranks' mean loss."""
    data = [np.load(out / f"rank{r}.npz") for r in range(2)]
    keys = [k for k in data[0].files if k != "loss"]
    updates = len(data[0]["loss"])
    batches = [{k: np.concatenate([d[k][u] for d in data]) for k in keys} for u in range(updates)]
    return batches, (data[0]["loss"] + data[1]["loss"]) / 2


def test_two_ranks_match_one_process_with_the_global_batch(two_rank_run: Path) -> None:
    out = two_rank_run / "first"
    first, second = ranks(out)
    assert first["digest"] == second["digest"]  # world model, bit for bit
    assert first["agent_digest"] == second["agent_digest"]  # actor, critic and target critic
    assert first["replay_dir"].endswith("rank0") and second["replay_dir"].endswith("rank1")
    batches, distributed_loss = recorded(out)
    assert len(batches) == first["updates"] >= 10
    assert batches[0]["obs"].shape[0] == worker_config("x").batch_size  # 2 + 2 rows: the global batch
    shard = [np.load(out / f"rank{r}.npz")["obs"] for r in range(2)]
    assert not np.array_equal(shard[0], shard[1])  # the ranks' data come from different seeds

    losses, model = single_process(batches)
    np.testing.assert_allclose(distributed_loss, losses, rtol=LOSS_RTOL)
    # Real check: without sharing gradients (rank 0's half alone) the curve misses by far more.
    alone, _ = single_process([{k: v[:2] for k, v in b.items()} for b in batches])
    assert np.max(np.abs(np.array(alone) / distributed_loss - 1)) > 100 * LOSS_RTOL

    bundle = load_bundle(two_rank_run / "run" / "bundle").model.state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(bundle[name], value, rtol=0, atol=1e-5, msg=name)

    # Metrics are reduced over the ranks and written once, by rank 0: each logged model_loss is the
    # mean of the period's updates of the single-process curve.
    rows = [json.loads(line) for line in (two_rank_run / "run" / "metrics.jsonl").read_text().splitlines()]
    done = 0
    for row in (r for r in rows if "model_loss" in r):
        period = losses[done : int(row["updates"])]
        np.testing.assert_allclose(row["model_loss"], np.mean(period), rtol=LOSS_RTOL)
        done = int(row["updates"])
    assert done == len(losses)


def test_torchrun_resume_continues_every_rank_from_the_checkpoint(two_rank_run: Path) -> None:
    run = two_rank_run / "run"
    state = json.loads((run / "checkpoints" / "step-000000000160" / "state.json").read_text())["state"]
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    result = run_worker(run, two_rank_run / "resumed", "--steps", "240")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    before, after = ranks(two_rank_run / "first"), ranks(two_rank_run / "resumed")
    for rank in range(2):
        assert after[rank]["resumed_from"] == 160 and after[rank]["env_steps"] == 240
        assert after[rank]["updates"] == before[rank]["updates"] + 80 // 8
        assert after[rank]["replay_total"] > state["ranks"][rank]["replay_total"]
    assert after[0]["digest"] == after[1]["digest"] != before[0]["digest"]
    assert after[0]["agent_digest"] == after[1]["agent_digest"]


def test_one_process_cannot_resume_a_two_rank_run(two_rank_run: Path) -> None:
    config = worker_config(str(two_rank_run / "run"), steps=400)
    with pytest.raises(DistributedError, match=r"2 rank\(s\), this launch has 1.*torchrun"):
        Trainer(config, progress=False)


def test_batch_that_does_not_split_over_the_ranks_fails_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    options = ["--preset", "tiny", "--batch_size", "5", "--device", "cpu", "--quiet", "--no-eval"]
    result = torchrun(["-m", "agents.cli", "train", *options, "--logdir", str(tmp_path / "run")])
    assert result.returncode != 0
    message = "batch_size=5 is the global batch and must split evenly over 2 ranks: use --batch_size 4 or 6"
    assert result.stderr.count(f"wmsim train: error: {message}") == 2  # every rank says why
    assert time.monotonic() - start < 60
    with pytest.raises(DistributedError, match="split evenly over 3 ranks"):
        local_batch(16, 3)
    assert local_batch(16, 4) == 4


def test_ranks_with_different_configs_fail_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    result = run_worker(tmp_path / "run", tmp_path / "out", "--mismatch")
    assert result.returncode != 0
    assert "different training configs: rank 1 has seq_len=12 (rank 0: 16)" in result.stderr
    assert not (tmp_path / "run" / "run.json").exists()  # refused before touching the logdir
    assert time.monotonic() - start < 60


def test_a_rank_that_dies_ends_the_job_instead_of_hanging(tmp_path: Path) -> None:
    start = time.monotonic()
    result = run_worker(tmp_path / "run", tmp_path / "out", "--die-after", "2")
    assert result.returncode != 0
    assert "exitcode  : 3" in result.stderr  # torchrun names the rank that died ...
    assert not (tmp_path / "out").exists()  # ... and rank 0 did not finish without it
    assert time.monotonic() - start < 60


def test_distributed_dreams_example_smoke() -> None:
    result = torchrun([str(ROOT / "examples" / "distributed_dreams.py"), "--smoke"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 rank(s) x 64 dreams on cpu" in result.stdout
    assert "weights identical on every rank: True" in result.stdout


def test_gradient_sync_is_not_attached_to_a_single_process(tmp_path: Path) -> None:
    config = dataclasses.replace(train_preset("tiny"), logdir=str(tmp_path / "run"), steps=10)
    trainer = Trainer(config, progress=False)
    assert trainer.syncs == [] and trainer.replay.directory == tmp_path / "run" / "replay"
    trainer.close()


@pytest.mark.parametrize("vector_env", ["sync", "async"])
def test_vector_envs_collect_whole_episodes_with_distinct_seeds(tmp_path: Path, vector_env: str) -> None:
    config = dataclasses.replace(
        train_preset("tiny"),
        logdir=str(tmp_path / "run"),
        steps=300,
        prefill=100,
        num_envs=3,
        vector_env=vector_env,
        checkpoint_every=150,
        eval_every=300,
        eval_episodes=1,
    )
    result = train(config, progress=False, evaluate=False)
    assert result.env_steps == 300 and result.updates > 0
    trainer = Trainer(dataclasses.replace(config, steps=330), progress=False)  # resumes
    data = trainer.replay.contents()
    trainer.close()
    starts = np.flatnonzero(data["is_first"])
    ends = np.flatnonzero(data["is_last"])
    assert starts[0] == 0 and len(starts) == len(ends) >= 3
    np.testing.assert_array_equal(starts[1:], ends[:-1] + 1)  # complete episodes, back to back
    firsts = {tuple(data["obs"][i]) for i in starts}
    assert len(firsts) == len(starts)  # every episode started from its own seed
    assert trainer.episodes >= len(starts) + 3  # the running episodes have seeds too


def test_bench_train_reports_rates_against_the_number_of_ranks(tmp_path: Path) -> None:
    out = tmp_path / "ddp.json"
    argv = ["bench", "train", "--nproc", "2", "--presets", "tiny", "--period", "40", "--json", str(out)]
    assert cli_main(argv) == 0
    (row,) = json.loads(out.read_text())
    assert row["nproc"] == 2 and row["global_batch"] == 4 and row["rank_batch"] == 2
    assert row["updates_per_s"] > 0 and row["env_steps_per_s"] > 0 and row["loop_updates_per_s"] > 0
    assert "| tiny | 2 | 1 |" in out.with_suffix(".md").read_text()
