"""``wmsim bench train``: world-model gradient updates per second for each preset on one device.

Each preset is timed on synthetic batches shaped like its usual env (Atari: 64x64x1 images and 6
discrete actions; DMC vision: 64x64x3 and 6 continuous; DMC proprio: 24-d states; small/tiny:
CartPole's 4-d states and 2 actions), so the figure measures the model, not an environment.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import torch

from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer

from .config import train_preset

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
