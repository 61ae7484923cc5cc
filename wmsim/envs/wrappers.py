"""Small Gymnasium wrappers used by :func:`wmsim.envs.make_env`."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from .spec import EnvSpec


class StepFlags(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Adds Dreamer's episode flags to every ``info`` and carries the env's :class:`EnvSpec`.

    ``info["is_first"]`` is True only in the info from ``reset``; ``info["is_last"]`` is
    ``terminated or truncated``; ``info["is_terminal"]`` is ``terminated`` only (a time-limit truncation is
    not terminal). ``seed`` (optional) is used by the first ``reset`` that is not given a seed itself.
    """

    def __init__(self, env: gym.Env[Any, Any], spec: EnvSpec, seed: int | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, spec=spec, seed=seed)
        gym.Wrapper.__init__(self, env)
        self.wmsim_spec = spec
        self._pending_seed = seed

    @property
    def env_spec(self) -> EnvSpec:
        """The :class:`EnvSpec` this env was made from."""
        return self.wmsim_spec

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info.update(is_first=True, is_last=False, is_terminal=False)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        terminated, truncated = bool(terminated), bool(truncated)
        info = dict(info)
        info.update(is_first=False, is_last=terminated or truncated, is_terminal=terminated)
        return obs, reward, terminated, truncated, info


class ActionRepeat(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Repeats each action ``repeat`` times, summing the rewards; stops early when the episode ends.

    (Gymnasium >= 1.3 has the equivalent ``gymnasium.wrappers.RepeatAction``; this one also works on 1.0-1.2.)
    """

    def __init__(self, env: gym.Env[Any, Any], repeat: int) -> None:
        if repeat < 1:
            raise ValueError(f"action repeat {repeat} must be >= 1")
        gym.utils.RecordConstructorArgs.__init__(self, repeat=repeat)
        gym.Wrapper.__init__(self, env)
        self.repeat = repeat

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class Float32Actions(gym.ActionWrapper[Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Presents a float ``Box`` action space of another dtype as ``float32`` (the env gets its own dtype)."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        space = env.action_space
        assert isinstance(space, gym.spaces.Box)
        self._inner_dtype = space.dtype
        self.action_space = gym.spaces.Box(
            low=space.low.astype(np.float32), high=space.high.astype(np.float32), dtype=np.float32
        )

    def action(self, action: Any) -> Any:
        return np.asarray(action, dtype=self._inner_dtype)


def env_spec_of(env: gym.Env[Any, Any]) -> EnvSpec:
    """The :class:`EnvSpec` an env made by :func:`wmsim.envs.make_env` was made from."""
    current: Any = env
    while current is not None:
        spec = getattr(current, "__dict__", {}).get("wmsim_spec")
        if isinstance(spec, EnvSpec):
            return spec
        current = getattr(current, "env", None) if isinstance(current, gym.Wrapper) else None
    raise ValueError(f"{env} carries no wmsim EnvSpec: make it with wmsim.envs.make_env")
