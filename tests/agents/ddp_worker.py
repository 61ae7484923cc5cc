"""One rank of the data-parallel tests in test_distributed.py, launched by torchrun.

    torchrun --standalone --nproc_per_node=2 tests/agents/ddp_worker.py --logdir D --out O [options]

Trains the tiny CartPole world model through agents.train.Trainer and writes ``O/rank{r}.json``
(a digest of the rank's parameters, its counters) and, with ``--record``, ``O/rank{r}.npz`` (every
batch the rank trained on and its loss), from which the test rebuilds the single-process run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import distributed
from agents.config import TrainConfig, train_preset
from agents.train import Trainer
from wmsim.world_model import WorldModelTrainer

GLOBAL_BATCH = 4


def worker_config(logdir: str, steps: int = 160) -> TrainConfig:
    """Tiny world model and actor-critic, free nats off (see test_distributed.py), fp32 on CPU."""
    base = train_preset("tiny")
    model = dataclasses.replace(base.model, loss=dataclasses.replace(base.model.loss, kl_free=0.0))
    return dataclasses.replace(
        base,
        env="CartPole-v1",
        logdir=logdir,
        device="cpu",
        precision="fp32",
        steps=steps,
        batch_size=GLOBAL_BATCH,
        seq_len=16,
        prefill=64,
        pretrain=3,
        train_every=8,
        log_every=40,
        checkpoint_every=160,
        eval_episodes=2,
        dist_timeout=60,
        model=model,
    )


class SharedNoise:
    """The uniform noise of the latent samples, identical whether one process draws it for the whole
    global batch or each rank for its rows: every draw takes the global batch's noise from a generator
    seeded alike everywhere and hands back this rank's slice of rows."""

    def __init__(self, rank: int, world_size: int, seed: int = 1234) -> None:
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def rand_like(self, tensor: torch.Tensor, **_: Any) -> torch.Tensor:
        rows = tensor.shape[0]
        full = torch.rand((rows * self.world_size, *tensor.shape[1:]), generator=self.generator)
        return full[self.rank * rows : (self.rank + 1) * rows].to(tensor.dtype)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        original = torch.rand_like
        torch.rand_like = self.rand_like  # type: ignore[assignment]
        try:
            yield
        finally:
            torch.rand_like = original


def record_updates(noise: SharedNoise, records: list[tuple[dict[str, np.ndarray], float]]) -> None:
    """Make every world-model update draw ``noise`` and append ``(batch, loss)`` to ``records``."""
    original = WorldModelTrainer.train_step

    def train_step(self: WorldModelTrainer, batch: dict[str, torch.Tensor]) -> Any:
        with noise.active():
            posts, metrics = original(self, batch)
        records.append(({k: v.cpu().numpy() for k, v in batch.items()}, float(metrics["model_loss"])))
        return posts, metrics

    WorldModelTrainer.train_step = train_step  # type: ignore[method-assign]


def die_after(updates: int) -> None:
    """Rank 1 exits abruptly (no cleanup) once it has made ``updates`` updates."""
    original = WorldModelTrainer.train_step
    count = [0]

    def train_step(self: WorldModelTrainer, batch: dict[str, torch.Tensor]) -> Any:
        count[0] += 1
        if count[0] > updates:
            os._exit(3)
        return original(self, batch)

    WorldModelTrainer.train_step = train_step  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--record", action="store_true", help="save batches and losses")
    parser.add_argument("--mismatch", action="store_true", help="rank 1 uses another seq_len")
    parser.add_argument("--die-after", type=int, default=None, help="rank 1 dies after N updates")
    args = parser.parse_args()
    rank = int(os.environ["RANK"])
    config = worker_config(args.logdir, args.steps)
    if args.mismatch and rank == 1:
        config = dataclasses.replace(config, seq_len=12)
    records: list[tuple[dict[str, np.ndarray], float]] = []
    if args.record:
        record_updates(SharedNoise(rank, int(os.environ["WORLD_SIZE"])), records)
    if args.die_after is not None and rank == 1:
        die_after(args.die_after)
    with distributed.launch(config.device, config.dist_timeout) as dist:
        trainer = Trainer(config, progress=False, dist=dist)
        result = trainer.run()
        trainer.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "digest": distributed.parameter_digest(trainer.model),
        "agent_digest": distributed.parameter_digest(trainer.agent) if trainer.agent else None,
        "updates": result.updates,
        "env_steps": result.env_steps,
        "resumed_from": result.resumed_from,
        "replay_total": trainer.replay.total_steps,
        "replay_dir": str(trainer.replay.directory),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(summary))
    if args.record:
        batches = {k: np.stack([b[k] for b, _ in records]) for k in records[0][0]}
        np.savez(out / f"rank{rank}.npz", loss=np.array([loss for _, loss in records]), **batches)


if __name__ == "__main__":
    main()
