"""Validation of a batch of numpy actions and of ``reset`` arguments at the dreams' API edge (no torch or
onnxruntime import here)."""

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


def model_action(action: Any, space: gym.Space) -> np.ndarray:
    """One action of a real env's ``space`` as the model takes it: a class index from 0 ``(1,)`` int64
    (discrete) or ``(1, A)`` float32 (continuous). Not range-checked: the real env has accepted it."""
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(action, np.int64).reshape(1) - int(space.start)
    return np.asarray(action, np.float32).reshape(1, -1)


def check_seed(seed: Any, n: int) -> int | list[int | None] | None:
    """A ``reset`` seed: None, a non-negative int, or a list of ``n`` such ints (or None), one per sub-env."""

    def valid(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 0)

    if seed is None:
        return None
    if isinstance(seed, (list, tuple)):
        if len(seed) != n or not all(s is None or valid(s) for s in seed):
            raise ValueError(
                f"seed={list(seed)!r}: a seed list needs {n} entries (one per sub-env), each a"
                " non-negative int or None; or pass one int for the whole batch"
            )
        return [None if s is None else int(s) for s in seed]
    if not valid(seed):
        raise ValueError(f"seed={seed!r}: pass a non-negative int, a list of {n} of them, or None")
    return int(seed)


def check_reset(
    seed: Any, options: dict[str, Any] | None, n: int, obs_shape: tuple[int, ...]
) -> tuple[int | list[int | None] | None, np.ndarray | None, np.ndarray | None]:
    """Validate the arguments of a batched dream's ``reset``: ``(seed (see check_seed), reset_mask (n,)
    bool or None, real observations (n, *obs_shape) or None)``. A single observation is accepted when
    ``n == 1``."""
    seed = check_seed(seed, n)
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
    return seed, mask, real
