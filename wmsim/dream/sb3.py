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
from .vector_env import DreamVectorEnv


class DreamSubEnv:
    """Sub-env ``index`` of a batched dream as SB3's ``get_attr``/``set_attr``/``env_method`` see it.

    Reading an attribute gives the sub-env's own value (one set with ``set_attr`` on some indices) or
    else the batched env's shared one; :meth:`render` is the sub-env's frame. The batched env's other
    methods act on every sub-env at once and are not offered per sub-env.
    """

    def __init__(self, dream: DreamVectorEnv, index: int) -> None:
        self.__dict__["_dream"] = dream
        self.__dict__["_index"] = index

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_dream"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value

    def render(self) -> np.ndarray | None:
        """This sub-env's ``(H, W, 3)`` frame (None without ``render_mode="rgb_array"``)."""
        frames = self._dream.render()
        return None if frames is None else frames[self._index]

    def get_wrapper_attr(self, name: str) -> Any:
        return getattr(self, name)

    def has_wrapper_attr(self, name: str) -> bool:
        return hasattr(self, name)

    def set_wrapper_attr(self, name: str, value: Any) -> None:
        setattr(self, name, value)


class DreamSB3VecEnv(VecEnv):
    """``num_envs`` dreams of ``model`` for SB3 algorithms (PPO, A2C, SAC, ...).

    Keyword arguments are those of :class:`~wmsim.dream.DreamVectorEnv` (``backend``, ``device``,
    ``obs_mode``, ``dtype``, ``time_limit``, ``termination``, ``render_mode``, ``seed``, the onnxruntime
    options), except the autoreset mode: SB3 resets finished episodes in the same step, always.
    ``obs_mode="decoded"`` on an image model gives ``(64, 64, C)`` uint8 observations for ``CnnPolicy``
    (SB3 transposes them itself); ``obs_mode="dict"`` gives ``{"latent", "decoded"}`` for
    ``MultiInputPolicy``. ``backend="onnxruntime"`` steps the bundle's exported ONNX graphs (run
    ``wmsim export-onnx BUNDLE_DIR`` first).

    ``get_attr``, ``set_attr`` and ``env_method`` address sub-envs by ``indices`` as SB3's own vector
    envs do (see :class:`DreamSubEnv`): an attribute of the batched env is shared, so ``set_attr`` of
    one must name every sub-env.
    """

    def __init__(
        self, model: Bundle | str | os.PathLike, num_envs: int = 16, *, backend: str = "torch", **kwargs: Any
    ) -> None:
        refused = sorted({"autoreset", "autoreset_mode"} & set(kwargs))
        if refused:
            raise ValueError(
                f"{refused}: SB3 vector envs reset finished episodes in the same step, and so does"
                " DreamSB3VecEnv: drop the option (or use DreamVectorEnv for other autoreset modes)"
            )
        self.dream = DreamVectorEnv(model, num_envs, backend=backend, autoreset="same_step", **kwargs)
        self._envs = [DreamSubEnv(self.dream, i) for i in range(self.dream.num_envs)]
        super().__init__(num_envs, self.dream.single_observation_space, self.dream.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
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

    def _targets(self, indices: VecEnvIndices) -> list[DreamSubEnv]:
        return [self._envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [env.get_wrapper_attr(attr_name) for env in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        targets = self._targets(indices)
        if hasattr(self.dream, attr_name):
            if len({id(env) for env in targets}) != self.num_envs:
                raise ValueError(
                    f"set_attr({attr_name!r}) on indices {[env._index for env in targets]}: {attr_name!r} is"
                    " shared by every sub-env of the batched dream; set it for all (indices=None)"
                )
            setattr(self.dream, attr_name, value)
            return
        for env in targets:
            setattr(env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        if not callable(getattr(DreamSubEnv, method_name, None)) or method_name.startswith("_"):
            raise ValueError(
                f"env_method({method_name!r}): the sub-envs of a batched dream offer"
                " render, get_wrapper_attr, has_wrapper_attr and set_wrapper_attr; call"
                f" venv.dream.{method_name}(...) to act on all of them at once"
            )
        return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._targets(indices))

    def get_images(self) -> Sequence[np.ndarray | None]:
        self.dream.render_mode = "rgb_array"
        frames = self.dream.render()
        return list(frames) if frames is not None else [None] * self.num_envs
