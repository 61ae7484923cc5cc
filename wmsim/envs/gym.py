"""Registered Gymnasium envs (``gym/<id>`` or a bare id such as ``CartPole-v1``).

The env is made without its registered ``TimeLimit``: ``spec.time_limit`` (in agent steps) is applied by
:func:`wmsim.envs.make_env` after the action repeat. Around the env, in order:

- ``gymnasium.wrappers.StickyAction`` when ``spec.sticky_actions > 0``;
- :class:`~wmsim.envs.wrappers.ActionRepeat` when ``spec.action_repeat > 1``;
- state: the vector cast to ``float32`` (``TransformObservation``, the env's bounds kept);
- pixels: ``ResizeObservation(spec.size)`` and, when asked, ``GrayscaleObservation(keep_dim=True)``; an env
  without image observations observes its ``rgb_array`` render (``AddRenderObservation(render_only=True)``).

Inside this module ``gym`` is always ``gymnasium``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from .spaces import check_action_space, check_observation_space, is_image_space, is_vector_space
from .spec import ID_HELP, EnvSpec
from .wrappers import ActionRepeat, Float32Actions

_CONTROLLED = {
    "render_mode": "make_env(render_mode=...)",
    "max_episode_steps": "time_limit",
}


@dataclass(frozen=True)
class GymProbe:
    """What :meth:`EnvSpec.from_id` needs to know about a Gymnasium id.

    Attributes:
        env_id: the registered id.
        obs_type: ``"state"`` or ``"pixels"`` from the observation space, None when not probed.
        max_episode_steps: the registered episode limit in env steps, None if unset.
    """

    env_id: str
    obs_type: str | None
    max_episode_steps: int | None


def _ensure_registered(env_id: str) -> None:
    """Register ale-py's ``ALE/...`` envs when such an id is asked for."""
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)


def registered_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """Gymnasium's registration of ``env_id``; unknown ids raise ``ValueError`` saying how ids look."""
    _ensure_registered(env_id)
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"unknown environment id {env_id!r}: {ID_HELP} (gymnasium: {exc})") from exc


def _without_time_limit(spec: gym.envs.registration.EnvSpec) -> gym.envs.registration.EnvSpec:
    return dataclasses.replace(spec, max_episode_steps=None)


def _check_kwargs(kwargs: dict[str, Any], where: str) -> None:
    for key in kwargs:
        if key in _CONTROLLED:
            raise ValueError(f"{where}: kwargs key {key!r} is set by wmsim: use {_CONTROLLED[key]} instead")


def _observation_kind(space: gym.Space[Any], where: str) -> str:
    try:
        return check_observation_space(space, where)
    except ValueError as exc:
        raise ValueError(f"{exc}; or pass obs_type='pixels' to observe the env's rendered frames") from exc


def probe_gym_env(env_id: str, kwargs: dict[str, Any], need_obs_type: bool = True) -> GymProbe:
    """Look ``env_id`` up (and, if ``need_obs_type``, make it once with ``kwargs`` to see its observation
    space)."""
    spec = registered_spec(env_id)
    obs_type = None
    if need_obs_type:
        _check_kwargs(kwargs, f"gym/{spec.id}")
        env = gym.make(_without_time_limit(spec), **kwargs)
        try:
            obs_type = _observation_kind(env.observation_space, f"gym/{spec.id}")
        finally:
            env.close()
    return GymProbe(spec.id, obs_type, spec.max_episode_steps)


def _float32_observations(env: gym.Env[Any, Any], space: gym.spaces.Box) -> gym.Env[Any, Any]:
    """Cast vector observations to ``float32``, keeping the bounds (``DtypeObservation`` would warn about
    casting float64 bounds; bounds beyond the float32 range become infinite)."""
    with np.errstate(over="ignore"):
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
    float_space = gym.spaces.Box(low=low, high=high, shape=space.shape, dtype=np.float32)
    return gym.wrappers.TransformObservation(env, lambda obs: np.asarray(obs, np.float32), float_space)


def make_gym(spec: EnvSpec, render_mode: str | None = None) -> gym.Env[Any, Any]:
    """The Gymnasium env of ``spec`` (without the time limit and step flags of ``make_env``).

    Observations: state ``(D,)`` ``float32`` or pixels ``(H, W, C)`` ``uint8``; actions: ``Discrete(n)`` or a
    ``float32`` ``Box (A,)``."""
    if spec.suite != "gym":
        raise ValueError(f"make_gym needs a gym spec, got {spec.id}")
    where = spec.id
    _check_kwargs(spec.kwargs, where)
    registration = _without_time_limit(registered_spec(spec.name))
    env: gym.Env[Any, Any] = gym.make(registration, render_mode=render_mode, **spec.kwargs)
    try:
        raw = env.observation_space
        if spec.obs_type == "pixels" and not is_image_space(raw):
            if render_mode not in (None, "rgb_array"):
                raise ValueError(
                    f"{where}: obs_type='pixels' observes the env's rgb_array frames, so render_mode "
                    f"{render_mode!r} is not possible: use render_mode=None or 'rgb_array'"
                )
            if "rgb_array" not in env.metadata.get("render_modes", []):
                raise ValueError(
                    f"{where}: the env has no image observations and cannot render rgb_array frames: use "
                    "obs_type='state'"
                )
            if env.render_mode != "rgb_array":
                env.close()
                env = gym.make(registration, render_mode="rgb_array", **spec.kwargs)
            env = gym.wrappers.AddRenderObservation(env, render_only=True)
            check_observation_space(env.observation_space, where)
        elif (
            spec.obs_type == "state"
            and not is_vector_space(raw)
            and _observation_kind(raw, where) == "pixels"
        ):
            raise ValueError(f"{where}: the env's observations are images {raw}: use obs_type='pixels'")
        kind = check_action_space(env.action_space, where)
        if kind == "continuous" and env.action_space.dtype != np.float32:
            env = Float32Actions(env)
        if spec.sticky_actions > 0:
            env = gym.wrappers.StickyAction(env, repeat_action_probability=spec.sticky_actions)
        if spec.action_repeat > 1:
            env = ActionRepeat(env, spec.action_repeat)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box)
        if spec.obs_type == "state":
            if space.dtype != np.float32:
                env = _float32_observations(env, space)
        else:
            if tuple(space.shape[:2]) != spec.size:
                env = gym.wrappers.ResizeObservation(env, spec.size)
            if spec.grayscale and space.shape[-1] == 3:
                env = gym.wrappers.GrayscaleObservation(env, keep_dim=True)
    except BaseException:
        env.close()
        raise
    return env
