"""Validation of a batch of numpy actions and of ``reset`` arguments, shared by the torch and onnxruntime
dream backends (no torch or onnxruntime import here)."""

from __future__ import annotations

import numbers
from typing import Any

import gymnasium as gym
import numpy as np


def check_actions(actions: Any, space: gym.Space, n: int) -> np.ndarray:
    """Validate a batch of numpy actions for ``n`` sub-envs of ``space``; the torch backend's rules and
    messages. Returns class indices from 0 ``(n,)`` int64 or ``(n, A)`` float32."""
    array = np.asarray(actions)
    if isinstance(space, gym.spaces.Discrete):
        if array.shape != (n,):
            raise ValueError(
                f"actions have shape {array.shape}; this dream expects ({n},) integer indices"
                f" of {space} (one per sub-env)"
            )
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"actions have dtype {array.dtype}; discrete actions must be integers in [0, {space.n})"
            )
        if array.min() < space.start or array.max() >= space.start + space.n:
            raise ValueError(
                f"actions {array.min()}..{array.max()} are out of range: {space} takes"
                f" integers in [{space.start}, {space.start + space.n})"
            )
        return (array - space.start).astype(np.int64)
    assert isinstance(space, gym.spaces.Box)
    expected = (n, *space.shape)
    if array.shape != expected:
        raise ValueError(
            f"actions have shape {array.shape}; this dream expects {expected} (one row per"
            f" sub-env of {space})"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"actions have dtype {array.dtype}; continuous actions must be floats")
    if not np.isfinite(array).all():
        raise ValueError("actions contain NaN or inf: check the policy's outputs")
    if (array < space.low - 1e-6).any() or (array > space.high + 1e-6).any():
        raise ValueError(
            f"actions outside the action space [{space.low.min()}, {space.high.max()}]:"
            " clip them (e.g. np.clip(a, space.low, space.high)) before stepping"
        )
    return array.astype(np.float32)


def check_time_limit(time_limit: Any) -> int | None:
    """``time_limit`` as the dreams take it: None (the real env's limit) or a positive number of steps."""
    if time_limit is None:
        return None
    if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Integral) or time_limit < 1:
        raise ValueError(
            f"time_limit={time_limit!r} must be an integer >= 1 (steps before truncation), or None for the"
            " real env's limit"
        )
    return int(time_limit)


def check_reset(
    seed: int | list[int] | None, options: dict[str, Any] | None, n: int, obs_shape: tuple[int, ...]
) -> tuple[int | None, np.ndarray | None, np.ndarray | None]:
    """Validate the arguments of a batched dream's ``reset``: ``(seed, reset_mask (n,) bool or None,
    real observations (n, *obs_shape) or None)``. A seed list is reduced to its first element, as one
    generator drives the batch; a single observation is accepted when ``n == 1``."""
    if isinstance(seed, (list, tuple)):
        seed = seed[0] if seed else None
    options = dict(options or {})
    unknown = set(options) - {"observation", "reset_mask"}
    if unknown:
        raise ValueError(f"unknown reset option(s) {sorted(unknown)}: use 'observation' or 'reset_mask'")
    mask = None
    if "reset_mask" in options:
        mask = np.asarray(options["reset_mask"], dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"reset_mask has shape {mask.shape}; expected ({n},)")
    real = None
    if "observation" in options:
        real = np.asarray(options["observation"])
        want = (n, *obs_shape)
        if real.shape == want[1:] and n == 1:
            real = real[None]
        if real.shape != want:
            raise ValueError(
                f"options['observation'] has shape {real.shape}; expected {want} real"
                " observations in the env's format"
            )
        if real.dtype.kind not in "biuf":
            raise ValueError(f"options['observation'] has dtype {real.dtype}; real observations are numbers")
        if real.dtype.kind == "f" and not np.isfinite(real).all():
            raise ValueError("options['observation'] contains NaN or inf: pass real observations")
    return None if seed is None else int(seed), mask, real
