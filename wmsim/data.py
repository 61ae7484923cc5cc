"""Real-env transitions in the replay's step format, shared by training and evaluation.

A *step* is a dict ``{obs, action, reward, is_first, is_last, is_terminal}`` where ``action`` is the
action that led to ``obs`` (zeros on the first step of an episode; one-hot for discrete actions) and
``reward`` the reward received on arriving at ``obs`` (Dreamer's convention).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from .world_model import IOSpec

Step = dict[str, Any]
Policy = Callable[[np.ndarray], Any]


def encode_action(action: Any, io: IOSpec) -> np.ndarray:
    """An env action as the model's float32 action vector ``(A,)`` (one-hot for discrete)."""
    if io.discrete:
        vector = np.zeros(io.action_size, np.float32)
        vector[int(action)] = 1.0
        return vector
    return np.asarray(action, np.float32).reshape(io.action_size)


def first_step(obs: np.ndarray, io: IOSpec) -> Step:
    """The step that starts an episode."""
    return {
        "obs": obs,
        "action": np.zeros(io.action_size, np.float32),
        "reward": np.float32(0.0),
        "is_first": True,
        "is_last": False,
        "is_terminal": False,
    }


def next_step(
    obs: np.ndarray, action: Any, reward: float, terminated: bool, truncated: bool, io: IOSpec
) -> Step:
    """The step an env transition arrives at."""
    return {
        "obs": obs,
        "action": encode_action(action, io),
        "reward": np.float32(reward),
        "is_first": False,
        "is_last": bool(terminated or truncated),
        "is_terminal": bool(terminated),
    }


def random_policy(action_space: gym.Space) -> Policy:
    """A policy that ignores the observation and samples the (seeded) action space."""
    return lambda obs: action_space.sample()


def rollout(
    env: gym.Env, policy: Policy, io: IOSpec, seed: int | None = None, max_steps: int | None = None
) -> dict[str, np.ndarray]:
    """One episode as stacked arrays ``(T + 1, ...)``, the first step included."""
    obs, _ = env.reset(seed=seed)
    steps = [first_step(obs, io)]
    for _ in range(max_steps if max_steps is not None else 10**9):
        action = policy(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        steps.append(next_step(obs, action, float(reward), terminated, truncated, io))
        if terminated or truncated:
            break
    return stack_steps(steps)


def stack_steps(steps: list[Step]) -> dict[str, np.ndarray]:
    """A list of steps as a dict of arrays with a leading time axis."""
    return {key: np.stack([np.asarray(step[key]) for step in steps]) for key in steps[0]}


def play_episodes(
    env: gym.Env,
    act: Policy,
    episodes: int,
    seed: int,
    *,
    on_reset: Callable[[int], Any] | None = None,
    max_steps: int | None = None,
) -> list[float]:
    """The returns of ``episodes`` episodes of ``act(obs) -> action`` in ``env``, episode ``i`` from
    ``env.reset(seed=seed + i)``; ``on_reset(seed + i)`` is called after each reset (a stateful policy
    resets its filter and reseeds its sampling there, so every episode is reproducible on its own).
    An episode is cut after ``max_steps`` steps when given. The one real-env evaluation loop."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be at least 1")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        if on_reset is not None:
            on_reset(seed + episode)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated or (max_steps is not None and steps >= max_steps)
        returns.append(total)
    return returns
