"""Behaviour policies that gather offline data for world-model pretraining (the PWM recipe).

A world model only learns the situations its data shows. Random actions never return the ball in Pong
nor swing a pendulum up, so offline datasets mix a *scripted* policy that plays reasonably (and reaches
the states a good policy meets) with random actions, per episode, at several noise levels.

Scripted policies read the true state (the ALE RAM for Atari, the env's own state for Gymnasium
control tasks); they exist only to gather data: no learned policy sees that state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from wmsim.config import check_choice

Behaviour = Callable[[np.ndarray], Any]

# ALE Pong RAM: the agent's (right) paddle and the ball's vertical positions; minimal action set
# NOOP, FIRE, RIGHT (up), LEFT (down), RIGHTFIRE, LEFTFIRE.
_PONG_PADDLE_Y, _PONG_BALL_Y = 51, 54
_PONG_UP, _PONG_DOWN, _PONG_NOOP = 2, 3, 0


def pong_tracker(env: gym.Env, offset: int = 4, dead_zone: int = 2) -> Behaviour:
    """Move the paddle towards the ball (ALE RAM). Scores about 6 points per 12 conceded."""
    ale = env.unwrapped.ale  # type: ignore[attr-defined]

    def act(obs: np.ndarray) -> int:
        ram = ale.getRAM()
        gap = int(ram[_PONG_PADDLE_Y]) + offset - int(ram[_PONG_BALL_Y])
        if gap > dead_zone:
            return _PONG_UP
        if gap < -dead_zone:
            return _PONG_DOWN
        return _PONG_NOOP

    return act


def cartpole_balancer(env: gym.Env) -> Behaviour:
    """Push towards where the pole falls (angle and angular velocity): balances CartPole-v1 for long."""

    def act(obs: np.ndarray) -> int:
        _, _, angle, angular_velocity = (float(v) for v in np.asarray(obs).reshape(-1)[:4])
        return int(angle + 0.5 * angular_velocity > 0)

    return act


def pendulum_swinger(env: gym.Env) -> Behaviour:
    """Pump energy until the pendulum nears the top, then hold it there with a PD controller.

    Pendulum-v1: ``theta'' = 15 sin(theta) + 3 u`` with theta = 0 upright; the energy
    ``0.5 theta'^2 + 15 (cos(theta) - 1)`` is 0 at rest at the top and -30 at rest at the bottom."""

    def act(obs: np.ndarray) -> np.ndarray:
        cos, sin, velocity = (float(v) for v in np.asarray(obs).reshape(-1)[:3])
        angle = float(np.arctan2(sin, cos))
        energy = 0.5 * velocity**2 + 15.0 * (cos - 1.0)
        if cos > 0.92:
            torque = -(10.0 * angle + 2.0 * velocity)
        elif energy < 0.0:
            torque = 2.0 * (np.sign(velocity) or 1.0)
        else:
            torque = -2.0 * np.sign(velocity)
        return np.array([np.clip(torque, -2.0, 2.0)], np.float32)

    return act


def cartpole_swinger(env: gym.Env) -> Behaviour:
    """dm_control cartpole-swingup from states (``[x, cos, sin, x', theta']``, force in [-1, 1]): pump
    energy towards the upright's, then balance with a linear state feedback. Scores about 830 of 1000."""

    def act(obs: np.ndarray) -> np.ndarray:
        x, cos, sin, velocity, angular_velocity = (float(v) for v in np.asarray(obs).reshape(-1)[:5])
        if cos > 0.85:
            force = 5.0 * np.arctan2(sin, cos) + angular_velocity + 0.5 * x + 0.5 * velocity
        else:
            energy = 0.5 * angular_velocity**2 + 9.8 * (cos - 1.0)  # 0 when resting upright
            force = energy * np.sign(angular_velocity * cos + 1e-6) - 0.3 * x
        return np.array([np.clip(force, -1.0, 1.0)], np.float32)

    return act


SCRIPTED: dict[str, Callable[[gym.Env], Behaviour]] = {
    "atari/Pong": pong_tracker,
    "CartPole-v1": cartpole_balancer,
    "Pendulum-v1": pendulum_swinger,
    "dmc/cartpole-swingup": cartpole_swinger,
    # the same controller holds the pole up from balance's upright starts
    "dmc/cartpole-balance": cartpole_swinger,
}

#: Per-episode probability of a random action in ``mixed`` data (1.0 = a purely random episode).
MIXED_EPSILONS = (0.0, 0.1, 0.3, 1.0)
#: Per-step probability that a ``mixed`` episode turns fully random for the rest of the episode, so the
#: data also shows how things go wrong from the states a good policy reaches (terminations included).
MIXED_GIVE_UP = 1.0 / 250.0
#: Per-env exceptions to :data:`MIXED_GIVE_UP`. Pong needs none: the scripted player already concedes
#: about two points for each it scores, and giving up turned most of a Pong dataset into random play
#: (mean return -19.9 over 60k steps).
MIXED_GIVE_UP_PER_ENV: dict[str, float] = {"atari/Pong": 0.0}
#: The behaviours :func:`behaviour_for` knows.
BEHAVIOURS = ("random", "scripted", "mixed")


def check_behaviour(kind: str, env_id: str) -> None:
    """Raise a ValueError unless ``kind`` is one of :data:`BEHAVIOURS` that ``env_id`` can play
    (``scripted`` and ``mixed`` need a player in :data:`SCRIPTED`)."""
    check_choice("behaviour", kind, BEHAVIOURS)
    if kind != "random" and env_id not in SCRIPTED:
        raise ValueError(
            f"no scripted behaviour for {env_id!r} (there is one for {', '.join(SCRIPTED)}):"
            " use --behaviour random"
        )


def behaviour_for(kind: str, env_id: str, env: gym.Env, episode: int, rng: np.random.Generator) -> Behaviour:
    """The behaviour of one episode: ``random``, ``scripted`` or ``mixed`` (scripted with a random-action
    probability cycling through :data:`MIXED_EPSILONS`, turning fully random for the rest of the episode
    with probability :data:`MIXED_GIVE_UP` per step, or :data:`MIXED_GIVE_UP_PER_ENV`)."""
    check_behaviour(kind, env_id)
    if kind == "random":
        return lambda obs: env.action_space.sample()
    scripted = SCRIPTED[env_id](env)
    if kind == "scripted":
        return scripted
    epsilon = MIXED_EPSILONS[episode % len(MIXED_EPSILONS)]
    give_up = MIXED_GIVE_UP_PER_ENV.get(env_id, MIXED_GIVE_UP)
    gave_up = False

    def act(obs: np.ndarray) -> Any:
        nonlocal gave_up
        gave_up = gave_up or rng.random() < give_up
        return env.action_space.sample() if gave_up or rng.random() < epsilon else scripted(obs)

    return act
