"""``wmsim bench train``: full DreamerV2 gradient updates per second (world model, then the actor-critic
imagining from every posterior state of the batch) for each preset and for the sizes of the peer
comparison, with the arithmetic of an update, the rate it achieves and the fraction of this machine's
matrix-multiply peak (measured in the same run, fp32 and bf16); and (``--nproc``) data-parallel
scaling against the number of torchrun ranks.

Each row is timed on synthetic batches shaped like its usual env (Atari: 64x64x1 images and 6
discrete actions; DMC vision: 64x64x3 and 6 continuous; DMC proprio: 24-d states; small/tiny and
CartPole sizes: CartPole's 4-d states and 2 actions), so the figure measures the model, not an
environment. ``--precision fp32 bf16`` times each row in each precision; ``--gather`` adds, for each
row, the same update with the one-hot gather of the categorical features on
(:func:`wmsim.nn.one_hot_gather`; dense products are the default); ``--phases`` adds the
milliseconds per update spent in each phase (encoder, observe loop, decoder, heads, imagination,
critics, optimisers, and the rest: backward passes and loss terms).

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from wmsim.config import DecoderConfig, EncoderConfig, HeadConfig, RSSMConfig
from wmsim.nn import one_hot_gather
from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer

from . import distributed
from .config import TrainConfig, train_preset
from .distributed import Dist, DistributedError, GradientSync, local_batch
from .dreamerv2 import ActorCritic
from .train import Trainer

ATARI_IO = IOSpec((64, 64, 1), True, 6, True)
CARTPOLE_IO = IOSpec((4,), False, 2, True)
PRESET_IO = {
    "atari": ATARI_IO,
    "atari_cpu": ATARI_IO,
    "dmc_vision": IOSpec((64, 64, 3), True, 6, False),
    "dmc_vision_cpu": IOSpec((64, 64, 3), True, 6, False),
    "dmc_proprio": IOSpec((24,), False, 6, False),
    "small": CARTPOLE_IO,
    "tiny": CARTPOLE_IO,
}


def _peer_sizes(name: str) -> TrainConfig:
    """The two sizes timed against SheepRL's DreamerV2 (reference/performance in the docs): (a)
    CartPole with deter/hidden 200, MLPs 2 x 200 and 32 x 32 latents; (b) Pong 64x64 gray with CNN
    depth 32, deter/hidden 600, MLPs 4 x 400. Batch 16 x 50, the paper's actor-critic otherwise."""
    if name == "sizes_a":
        base, units, layers = train_preset("small"), 200, 2
        rssm = RSSMConfig(deter=200, hidden=200)
        depth = 16
    else:
        base, units, layers = train_preset("atari"), 400, 4
        rssm = RSSMConfig(deter=600, hidden=600)
        depth = 32
    head = HeadConfig(layers=layers, units=units)
    model = dataclasses.replace(
        base.model,
        rssm=rssm,
        encoder=EncoderConfig(cnn_depth=depth, mlp_layers=layers, mlp_units=units),
        decoder=DecoderConfig(cnn_depth=depth, mlp_layers=layers, mlp_units=units),
        reward_head=head,
        discount_head=head,
    )
    agent = dataclasses.replace(
        base.agent, actor_layers=layers, actor_units=units, critic_layers=layers, critic_units=units
    )
    return dataclasses.replace(base, batch_size=16, seq_len=50, model=model, agent=agent)


BENCH_SIZES: dict[str, tuple[TrainConfig, IOSpec]] = {
    "sizes_a": (_peer_sizes("sizes_a"), CARTPOLE_IO),
    "sizes_b": (_peer_sizes("sizes_b"), ATARI_IO),
}


def bench_config(name: str) -> tuple[TrainConfig, IOSpec]:
    """The training config and synthetic IO of a preset or a peer-comparison size."""
    if name in BENCH_SIZES:
        return BENCH_SIZES[name]
    return train_preset(name), PRESET_IO[name]


def synthetic_batch(io: IOSpec, batch: int, length: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random data in the replay's layout ``(B, T, ...)``."""
    gen = torch.Generator().manual_seed(0)
    if io.image:
        obs = torch.randint(0, 256, (batch, length, *io.obs_shape), dtype=torch.uint8, generator=gen)
    else:
        obs = torch.randn(batch, length, *io.obs_shape, generator=gen)
    if io.discrete:
        index = torch.randint(0, io.action_size, (batch, length), generator=gen)
        action = torch.nn.functional.one_hot(index, io.action_size).float()
    else:
        action = torch.rand(batch, length, io.action_size, generator=gen) * 2 - 1
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


def matmul_peak(device: torch.device, size: int = 2048, seconds: float = 1.0) -> dict[str, float]:
    """GFLOP/s of a large square matrix product in fp32 and bf16: the machine's arithmetic ceiling
    as torch reaches it."""
    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        a @ b
        _sync(device)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            _sync(device)
            count += 1
        peak[name] = 2 * size**3 * count / (time.perf_counter() - start) / 1e9
    return peak


def update_flops(model: WorldModel, trainer: WorldModelTrainer, agent: ActorCritic, data: dict) -> float:
    """Floating-point operations of one full update (forward and backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        posts, _ = trainer.train_step(data)
        agent.train_step(model, posts, data["is_terminal"])
    return float(counter.get_total_flops())


def _time_updates(
    model: WorldModel, trainer: WorldModelTrainer, agent: ActorCritic, data: dict, updates: int
) -> tuple[float, float]:
    """Seconds per update of the world model and of the actor-critic: the median over ``updates``
    timed updates after two warm-up ones (on a shared VM single updates slow down by tens of percent
    now and then; the median does not follow them)."""
    device = next(model.parameters()).device
    world, actor_critic = [], []
    for i in range(updates + 2):
        start = time.perf_counter()
        posts, _ = trainer.train_step(data)
        _sync(device)
        middle = time.perf_counter()
        agent.train_step(model, posts, data["is_terminal"])
        _sync(device)
        if i >= 2:
            world.append(middle - start)
            actor_critic.append(time.perf_counter() - middle)
    return statistics.median(world), statistics.median(actor_critic)


class PhaseClock:
    """Wall seconds spent in named phases of an update: :meth:`wrap` replaces an instance's method
    (or a module's ``forward``) by a timed one that synchronises the device around the call. The
    phases are forward work; what is left of a stage's time is its backward passes, loss terms and
    host work. The synchronisations slow the update a little, so phases are timed apart from the
    throughput figures."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stage = ""
        self.seconds: dict[str, float] = {}

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            _sync(self.device)
            start = time.perf_counter()
            out = original(*args, **kwargs)
            _sync(self.device)
            key = f"{self.stage}: {phase}"
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
            return out

        setattr(owner, name, timed)


def _wrap_phases(
    clock: PhaseClock, model: WorldModel, trainer: WorldModelTrainer, agent: ActorCritic
) -> None:
    clock.wrap(model, "encode", "encoder")
    clock.wrap(model.rssm, "observe", "observe loop (RSSM filter)")
    clock.wrap(model, "decode", "decoder")
    for head in ("reward", "discount_logits"):
        clock.wrap(model, head, "reward + discount heads")
    clock.wrap(model, "transition", "imagination: latent transition")
    clock.wrap(agent.actor.net, "forward", "imagination: actor")
    clock.wrap(agent.target_critic, "forward", "target critic")
    clock.wrap(agent.critic, "forward", "critic")
    clock.wrap(trainer.optimizer, "step", "optimiser")
    clock.wrap(agent.actor_opt, "step", "optimiser")
    clock.wrap(agent.critic_opt, "step", "optimiser")


def time_phases(
    model: WorldModel, trainer: WorldModelTrainer, agent: ActorCritic, data: dict, updates: int
) -> dict[str, float]:
    """Seconds per update in each phase (see :class:`PhaseClock`), world model then actor-critic;
    ``"<stage>: backward, loss terms, other"`` holds the rest of each stage. The wrappers are
    instance attributes and are removed afterwards."""
    device = next(model.parameters()).device
    clock = PhaseClock(device)
    owners: list[Any] = [model, model.rssm, agent.actor.net, agent.target_critic, agent.critic]
    owners += [trainer.optimizer, agent.actor_opt, agent.critic_opt]
    _wrap_phases(clock, model, trainer, agent)
    totals = {"world model": 0.0, "actor-critic": 0.0}
    try:
        for _ in range(updates):
            clock.stage = "world model"
            start = time.perf_counter()
            posts, _ = trainer.train_step(data)
            _sync(device)
            totals["world model"] += time.perf_counter() - start
            clock.stage = "actor-critic"
            start = time.perf_counter()
            agent.train_step(model, posts, data["is_terminal"])
            _sync(device)
            totals["actor-critic"] += time.perf_counter() - start
    finally:
        for owner in owners:
            for name in ("encode", "observe", "decode", "reward", "discount_logits", "transition"):
                owner.__dict__.pop(name, None)
            owner.__dict__.pop("forward", None)
            owner.__dict__.pop("step", None)
    phases = {key: value / updates for key, value in clock.seconds.items()}
    for stage, total in totals.items():
        inside = sum(v for k, v in phases.items() if k.startswith(f"{stage}: "))
        phases[f"{stage}: backward, loss terms, other"] = max(0.0, total / updates - inside)
    return phases


def bench_train(
    presets: list[str],
    device: torch.device,
    precision: str | list[str] = "auto",
    updates: int = 5,
    batch_size: int | None = None,
    gather: bool = False,
    phases: bool = False,
) -> dict[str, Any]:
    """Time full updates per preset or size and precision; returns ``{"peak": ..., "rows": [...]}``.
    ``gather``: also time each row with :func:`wmsim.nn.one_hot_gather` on; ``phases``: add the
    seconds per phase of an update (:func:`time_phases`) to each row."""
    peak = matmul_peak(device)
    precisions = [precision] if isinstance(precision, str) else list(precision)
    rows = []
    for name in presets:
        for asked in precisions:
            rows += _bench_rows(name, device, asked, updates, batch_size, gather, phases, peak)
    return {"peak_gflop_per_s": peak, "rows": rows}


def _bench_rows(
    name: str,
    device: torch.device,
    precision: str,
    updates: int,
    batch_size: int | None,
    gather: bool,
    phases: bool,
    peak: dict[str, float],
) -> list[dict[str, Any]]:
    config, io = bench_config(name)
    batch, length = batch_size or config.batch_size, config.seq_len
    torch.manual_seed(0)
    model = WorldModel(config.model, io).to(device)
    trainer = WorldModelTrainer(model, precision=precision)
    agent = ActorCritic(config.agent, model, precision=trainer.precision).to(device)
    data = synthetic_batch(io, batch, length, device)
    flops = update_flops(model, trainer, agent, data)
    rows = []
    for path, enabled in [("dense", False)] + ([("gather", True)] if gather else []):
        with one_hot_gather(enabled):
            world_s, agent_s = _time_updates(model, trainer, agent, data, updates)
            phase_s = time_phases(model, trainer, agent, data, max(1, updates // 2)) if phases else None
        total = world_s + agent_s
        achieved = flops / total / 1e9
        rows.append(
            {
                "preset": name,
                "path": path,
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor() or platform.machine(),
                "precision": trainer.precision,
                "batch": batch,
                "seq_len": length,
                "params_m": sum(p.numel() for m in (model, agent) for p in m.parameters()) / 1e6,
                "updates_per_s": 1.0 / total,
                "world_model_s": world_s,
                "actor_critic_s": agent_s,
                "gflop_per_update": flops / 1e9,
                "gflop_per_s": achieved,
                "peak_fraction": achieved / peak[trainer.precision],
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                **({"phases_s": phase_s} if phase_s is not None else {}),
            }
        )
    return rows


def format_bench(result: dict[str, Any]) -> str:
    """The rows as a markdown table under a line about the machine's measured peak, then the phase
    table of each row that has one."""
    peak = result["peak_gflop_per_s"]
    rows = result["rows"]
    first = rows[0] if rows else {}
    lines = [
        f"{first.get('device_name', '?')}, {first.get('threads', '?')} threads,"
        f" torch {first.get('torch', '?')}; matmul peak {peak['fp32']:.0f} GFLOP/s fp32,"
        f" {peak['bf16']:.0f} GFLOP/s bf16",
        "",
        "| preset | path | precision | batch | params | updates/s | world model s | actor-critic s |"
        " GFLOP/update | GFLOP/s | of peak |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['path']} | {r['precision']} | {r['batch']}x{r['seq_len']} |"
            f" {r['params_m']:.2f}M | {r['updates_per_s']:.2f} | {r['world_model_s']:.3f} |"
            f" {r['actor_critic_s']:.3f} | {r['gflop_per_update']:.1f} | {r['gflop_per_s']:.0f} |"
            f" {100 * r['peak_fraction']:.0f}% |"
        )
    timed = [r for r in rows if "phases_s" in r]
    if timed:
        names = list(dict.fromkeys(k for r in timed for k in r["phases_s"]))
        header = " | ".join(f"{r['preset']} {r['path']} {r['precision']}" for r in timed)
        lines += ["", "Milliseconds per update in each phase:", "", f"| phase | {header} |"]
        lines.append("|---|" + "---:|" * len(timed))
        for phase in names:
            cells = " | ".join(f"{1000 * r['phases_s'].get(phase, 0.0):.0f}" for r in timed)
            lines.append(f"| {phase} | {cells} |")
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
    config, io = bench_config(preset)
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
            agent.train_step(model, posts, data["is_terminal"])

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
