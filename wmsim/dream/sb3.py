"""Stable-Baselines3 ``VecEnv`` over a batched dream.

SB3's contract: ``step`` resets finished envs in the same step, returns the first observation of the
new episode, and puts the last observation of the finished one in ``info["terminal_observation"]``
with ``info["TimeLimit.truncated"]`` telling a time-limit truncation from a real termination.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from ..bundle import Bundle
from .factory import make_dream_vector_env


class DreamSB3VecEnv(VecEnv):
    """``num_envs`` dreams of ``model`` for SB3 algorithms (PPO, A2C, SAC, ...).

    Keyword arguments are those of :class:`~wmsim.dream.DreamVectorEnv` (``device``, ``obs_mode``, ``dtype``,
    ``time_limit``, ``termination``, ``seed``). ``obs_mode="pixels"`` on an image model gives
    ``(64, 64, C)`` uint8 observations for ``CnnPolicy`` (SB3 transposes them itself).
    ``backend="onnxruntime"`` steps the bundle's exported ONNX graphs instead
    (:class:`~wmsim.dream.ort_env.OrtDreamVectorEnv`; run ``wmsim export-onnx BUNDLE_DIR`` first).
    """

    def __init__(
        self, model: Bundle | str | os.PathLike, num_envs: int = 16, *, backend: str = "torch", **kwargs: Any
    ) -> None:
        if kwargs.get("obs_mode") == "dict":
            raise ValueError("obs_mode='dict' is not offered for SB3: use 'latent' or 'pixels'")
        kwargs.pop("autoreset", None)
        self.dream: Any = make_dream_vector_env(
            model, num_envs, backend=backend, autoreset="same_step", **kwargs
        )
        super().__init__(num_envs, self.dream.single_observation_space, self.dream.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = kwargs.get("seed")
        self.render_mode = None

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if getattr(self, "_seeds", None) and self._seeds[0] is not None else None
        obs, _ = self.dream.reset(seed=seed)
        self._reset_seeds()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        actions = self._actions
        if isinstance(self.action_space, gym.spaces.Discrete):
            actions = np.asarray(actions).reshape(self.num_envs)
        obs, reward, terminated, truncated, info = self.dream.step(actions)
        self._actions = None
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = info["final_obs"]
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = final[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.dream.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.dream, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.dream, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        result = getattr(self.dream, method_name)(*method_args, **method_kwargs)
        return [result] * len(list(self._get_indices(indices)))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))

    def get_images(self) -> Sequence[np.ndarray | None]:
        self.dream.render_mode = "rgb_array"
        frames = self.dream.render()
        return list(frames) if frames is not None else [None] * self.num_envs
