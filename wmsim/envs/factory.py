"""``make_env``: a real env, as a standard Gymnasium env whose observations a world model consumes."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from .spaces import check_action_space, check_observation_space
from .spec import EnvSpec
from .wrappers import StepFlags


def _resolve(spec: EnvSpec | str, overrides: dict[str, Any]) -> EnvSpec:
    if isinstance(spec, EnvSpec):
        return spec.replace(**overrides) if overrides else spec
    if isinstance(spec, str):
        return EnvSpec.from_id(spec, **overrides)
    raise TypeError(f"make_env takes an EnvSpec or an id string, got {type(spec).__name__}")


def make_env(
    spec: EnvSpec | str,
    *,
    seed: int | None = None,
    render_mode: str | None = None,
    **overrides: Any,
) -> gym.Env[Any, Any]:
    """Build the real env that ``spec`` (an :class:`EnvSpec` or an id such as ``"atari/Pong"``,
    ``"dmc/walker-walk"``, ``"CartPole-v1"``) describes; ``overrides`` replace spec fields.

    The result is a standard Gymnasium env:

    - observations ``Box(0, 255, (H, W, C), uint8)`` (pixels; ``C`` 1 for grayscale, 3 for RGB) or
      ``Box(low, high, (D,), float32)`` (state);
    - actions ``Discrete(n)`` or ``Box(low, high, (A,), float32)``;
    - ``info`` of every ``reset`` and ``step`` carries ``is_first``, ``is_last`` and ``is_terminal``
      (a ``spec.time_limit`` truncation is last but not terminal);
    - the outermost wrapper is :class:`~wmsim.envs.wrappers.StepFlags`, inside it a
      ``gymnasium.wrappers.TimeLimit(spec.time_limit)`` when the limit is not None; :func:`env_spec_of`
      gives the spec back.

    ``seed`` seeds the action space and the first ``reset()`` that is not given a seed itself.
    ``render_mode``: None, ``"rgb_array"`` (or what the underlying env offers, e.g. ``"human"`` for gym).
    Unsupported spaces raise ``ValueError`` saying the fix.
    """
    spec = _resolve(spec, overrides)
    if spec.suite == "atari":
        from .atari import make_atari

        env = make_atari(spec, render_mode=render_mode)
    elif spec.suite == "dmc":
        from .dmc import DMCEnv

        env = DMCEnv.from_spec(spec, render_mode=render_mode)
    else:
        from .gym import make_gym

        env = make_gym(spec, render_mode=render_mode)
    try:
        kind = check_observation_space(env.observation_space, spec.id)
        check_action_space(env.action_space, spec.id)
        if kind != spec.obs_type:
            raise ValueError(
                f"{spec.id}: made {kind} observations {env.observation_space} for obs_type {spec.obs_type!r}"
            )
        if spec.time_limit is not None:
            env = gym.wrappers.TimeLimit(env, max_episode_steps=spec.time_limit)
        env = StepFlags(env, spec, seed=seed)
        if seed is not None:
            env.action_space.seed(seed)
    except BaseException:
        env.close()
        raise
    return env
