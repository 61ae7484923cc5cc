"""Write a dream as a video: decoded frames of a few batched dreams side by side."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from .vector_env import DreamVectorEnv


def write_dream_video(
    model: Bundle | str | os.PathLike,
    path: str | os.PathLike,
    *,
    steps: int = 100,
    num_envs: int = 4,
    policy: Callable[[np.ndarray], np.ndarray] | None = None,
    seed: int = 0,
    fps: int = 15,
    scale: int = 2,
) -> Path:
    """Dream ``steps`` steps in ``num_envs`` envs (``policy(latent_obs (B, F)) -> actions``; random when
    None) and write their decoded frames side by side as a GIF (or any format imageio writes from the
    suffix). Returns the path."""
    import imageio.v3 as iio

    env = DreamVectorEnv(model, num_envs, device="cpu", render_mode="rgb_array", seed=seed)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = [_tile(env.render(), scale)]
    for _ in range(steps):
        actions: Any = policy(obs) if policy is not None else env.action_space.sample()
        obs, *_ = env.step(actions)
        frames.append(_tile(env.render(), scale))
    env.close()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, np.stack(frames), duration=1000 / fps, loop=0)
    return out


def _tile(frames: tuple[np.ndarray, ...] | None, scale: int) -> np.ndarray:
    assert frames is not None
    row = np.concatenate([np.pad(f, ((2, 2), (2, 2), (0, 0)), constant_values=255) for f in frames], 1)
    return row.repeat(scale, 0).repeat(scale, 1)
