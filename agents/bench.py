"""``wmsim bench train``: world-model gradient updates per second for each preset on one device, and
(``--nproc``) data-parallel scaling against the number of torchrun ranks.

Each preset is timed on synthetic batches shaped like its usual env (Atari: 64x64x1 images and 6
discrete actions; DMC vision: 64x64x3 and 6 continuous; DMC proprio: 24-d states; small/tiny:
CartPole's 4-d states and 2 actions), so the figure measures the model, not an environment.

With ``--nproc 1 2 ...`` each row is a ``torchrun --standalone`` job on this machine: full updates/s
(world model and actor-critic) on a synthetic global batch split over the ranks, and env steps/s and
updates/s of the real training loop (the preset's env, ``--num-envs`` envs per rank) over one log
period after the prefill. On a CPU the cores are shared out: ``OMP_NUM_THREADS = cores // ranks``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer

from . import distributed
from .config import train_preset
from .distributed import Dist, DistributedError, GradientSync, local_batch
from .dreamerv2 import ActorCritic
from .train import Trainer

PRESET_IO = {
    "atari": IOSpec((64, 64, 1), True, 6, True),
    "dmc_vision": IOSpec((64, 64, 3), True, 6, False),
    "dmc_proprio": IOSpec((24,), False, 6, False),
    "small": IOSpec((4,), False, 2, True),
    "tiny": IOSpec((4,), False, 2, True),
}


def synthetic_batch(io: IOSpec, batch: int, length: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random data in the replay's layout ``(B, T, ...)``."""
    gen = torch.Generator().manual_seed(0)
    if io.image:
        obs = torch.randint(0, 256, (batch, length, *io.obs_shape), dtype=torch.uint8, generator=gen)
    else:
        obs = torch.randn(batch, length, *io.obs_shape, generator=gen)
    action = torch.randn(batch, length, io.action_size, generator=gen)
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    data = {
        "obs": obs,
        "action": action,
        "reward": torch.randn(batch, length, generator=gen),
        "is_first": is_first,
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in data.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(
    presets: list[str],
    device: torch.device,
    precision: str = "auto",
    updates: int = 5,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """Time ``updates`` world-model updates per preset (after two warm-up updates)."""
    rows = []
    for name in presets:
        config = train_preset(name)
        io = PRESET_IO[name]
        batch, length = batch_size or config.batch_size, config.seq_len
        torch.manual_seed(0)
        model = WorldModel(config.model, io).to(device)
        trainer = WorldModelTrainer(model, precision=precision)
        data = synthetic_batch(io, batch, length, device)
        for _ in range(2):
            trainer.train_step(data)
        _sync(device)
        start = time.perf_counter()
        for _ in range(updates):
            trainer.train_step(data)
        _sync(device)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "preset": name,
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor() or platform.machine(),
                "precision": trainer.precision,
                "batch": batch,
                "seq_len": length,
                "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                "updates_per_s": updates / seconds,
                "seq_steps_per_s": updates * batch * length / seconds,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    return rows


def format_bench(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    lines = [
        f"{'preset':<12} {'device':<8} {'prec':<5} {'batch':>9} {'params':>8} {'updates/s':>10}"
        f" {'steps/s':>10}"
    ]
    for r in rows:
        lines.append(
            f"{r['preset']:<12} {r['device']:<8} {r['precision']:<5} {r['batch']:>4}x{r['seq_len']:<4}"
            f" {r['params_m']:>7.2f}M {r['updates_per_s']:>10.2f} {r['seq_steps_per_s']:>10.0f}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Data-parallel scaling: `wmsim bench train --nproc 1 2 ...`
# ---------------------------------------------------------------------------------------------------
def bench_train_ranks(
    nprocs: list[int],
    presets: list[str],
    num_envs: list[int],
    device: str = "cpu",
    period: int = 500,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """For each preset, number of ranks and ``num_envs``: launch ``torchrun`` on this machine and
    measure synthetic update rates and a real training loop (see :func:`_rank_worker`). ``threads``:
    torch threads per rank (default: the cores shared out over the ranks)."""
    return [
        _launch_ranks(n, preset, envs, device, period, threads)
        for preset in presets
        for n in nprocs
        for envs in num_envs
    ]


def _launch_ranks(
    nproc: int, preset: str, num_envs: int, device: str, period: int, threads: int | None
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    threads = threads or max(1, cores // nproc)
    with tempfile.TemporaryDirectory(prefix="wmsim-bench-") as tmp:
        out = Path(tmp) / "row.json"
        command = [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"),
            *("-m", "agents.bench", "--preset", preset, "--num-envs", str(num_envs), "--device", device),
            *("--period", str(period), "--logdir", str(Path(tmp) / "run"), "--out", str(out)),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0 or not out.exists():
            raise DistributedError(
                f"the benchmark with {nproc} rank(s) failed (exit code {done.returncode}):\n"
                f"{done.stderr[-2000:]}"
            )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return {**json.loads(out.read_text()), "threads_per_rank": threads, "cores": cores, "load_1min": load}


def _synthetic_updates_per_s(preset: str, dist: Dist, updates: int = 10) -> float:
    """Full updates (world model, then actor-critic) per second on a synthetic global batch split
    over the ranks, gradients all-reduced: the model's share of the scaling, without envs."""
    config = train_preset(preset)
    io = PRESET_IO[preset]
    device = dist.device or torch.device("cpu")
    torch.manual_seed(0)
    model = WorldModel(config.model, io).to(device)
    trainer = WorldModelTrainer(model)
    agent = ActorCritic(config.agent, model).to(device) if config.learn_policy else None
    modules = [m for m in (model, agent) if m is not None]
    syncs = [GradientSync(m.parameters(), dist) for m in modules] if dist.enabled else []
    data = synthetic_batch(io, local_batch(config.batch_size, dist.world_size), config.seq_len, device)

    def update() -> None:
        posts, _ = trainer.train_step(data)
        if agent is not None:
            agent.train_step(model, posts)

    for _ in range(2):
        update()
    _sync(device)
    start = time.perf_counter()
    for _ in range(updates):
        update()
    _sync(device)
    seconds = time.perf_counter() - start
    for sync in syncs:
        sync.close()
    return updates / seconds


def _loop_rates(preset: str, num_envs: int, period: int, logdir: str, dist: Dist) -> dict[str, float]:
    """The real training loop (collection, world model and actor-critic, logging): env steps/s and
    updates/s over one log period after the prefill (the next period holds the final evaluation)."""
    config = dataclasses.replace(
        train_preset(preset),
        logdir=logdir,
        device=str(dist.device or "cpu"),
        steps=3 * period,
        prefill=period,
        pretrain=1,
        log_every=period,
        checkpoint_every=3 * period,
        eval_every=3 * period,
        eval_episodes=1,
        num_envs=num_envs,
    )
    trainer = Trainer(config, progress=False, dist=dist)
    trainer.run()
    trainer.close()
    if not dist.is_main:
        return {}
    rows = [json.loads(line) for line in (Path(logdir) / "metrics.jsonl").read_text().splitlines()]
    timed = [row for row in rows if "env_sps" in row][-2]
    return {"env_steps_per_s": timed["env_sps"], "loop_updates_per_s": timed["updates_ps"]}


def _rank_worker(argv: list[str] | None = None) -> None:
    """One rank of :func:`bench_train_ranks` (run by torchrun); rank 0 writes the row to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m agents.bench")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--period", type=int, default=500)
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with distributed.launch(args.device, timeout_s=600) as dist:
        synthetic = _synthetic_updates_per_s(args.preset, dist)
        loop = _loop_rates(args.preset, args.num_envs, args.period, args.logdir, dist)
        device = dist.device or torch.device("cpu")
    if dist.is_main:
        config = train_preset(args.preset)
        row = {
            "preset": args.preset,
            "env": config.env,
            "nproc": dist.world_size,
            "num_envs": args.num_envs,
            "device": str(device.type),
            "global_batch": config.batch_size,
            "rank_batch": local_batch(config.batch_size, dist.world_size),
            "seq_len": config.seq_len,
            "train_every": config.train_every,
            "updates_per_s": synthetic,
            **loop,
            "torch": torch.__version__,
        }
        Path(args.out).write_text(json.dumps(row))


def format_ranks_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`bench_train_ranks` as a markdown table under a line about the machine."""
    first = rows[0] if rows else {}
    load = ", ".join(f"{r['load_1min']:.1f}" for r in rows if r.get("load_1min") is not None)
    lines = [
        f"Data-parallel training (`wmsim bench train --nproc`) on {first.get('device', '?')}:"
        f" {first.get('cores', '?')} cores, torch {first.get('torch', '?')}; 1-minute load average after"
        f" each row: {load or 'n/a'}",
        "",
        "| preset | ranks | envs/rank | threads/rank | batch (global = ranks x rank) | updates/s (model) |"
        " env steps/s (loop) | updates/s (loop) |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['nproc']} | {r['num_envs']} | {r['threads_per_rank']} |"
            f" {r['global_batch']} = {r['nproc']} x {r['rank_batch']} | {r['updates_per_s']:.1f} |"
            f" {r['env_steps_per_s']:.0f} | {r['loop_updates_per_s']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    _rank_worker()
