"""A single-env ``gymnasium.Env`` view of a dream (what ``gym.make("wmsim/<Name>-dream")`` returns), on
either backend; no torch or onnxruntime import here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from .vector_env import DreamVectorEnv

if TYPE_CHECKING:
    from ..bundle import Bundle


class DreamEnv(gym.Env):
    """One dreamed episode at a time: a :class:`DreamVectorEnv` of one sub-env without autoreset.

    Takes the keyword arguments of :class:`DreamVectorEnv` (``backend``, ``device``, ``obs_mode``,
    ``dtype``, ``time_limit``, ``termination``, ``render_mode``, ``seed``, ``task`` for a multi-task
    bundle, the onnxruntime options) except the autoreset mode: a Gymnasium ``Env`` does not reset
    itself. Actions are the real env's:
    an int for a discrete model, a float32 array ``(A,)`` for a continuous one.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self, model: Bundle | str | os.PathLike, *, render_mode: str | None = None, **kwargs: Any
    ) -> None:
        refused = sorted({"autoreset", "autoreset_mode", "num_envs"} & set(kwargs))
        if refused:
            raise ValueError(
                f"{refused}: a single DreamEnv plays one episode and does not reset itself; use"
                " gym.make_vec(...) (a DreamVectorEnv) for batches and autoreset modes, or wrap the env"
                " in gymnasium.wrappers.Autoreset"
            )
        self.vector = DreamVectorEnv(model, 1, autoreset="disabled", render_mode=render_mode, **kwargs)
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space
        self.render_mode = render_mode
        self._needs_reset = True

    @property
    def bundle(self) -> Bundle | None:
        return self.vector.bundle

    @property
    def device(self) -> Any:
        return self.vector.device

    @property
    def backend(self) -> str:
        return self.vector.backend

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
        obs, info = self.vector.reset(seed=seed, options=options)
        self._needs_reset = False
        return _first(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("the dreamed episode has ended (or never started): call reset()")
        obs, reward, terminated, truncated, _ = self.vector.step(self._batch_action(action))
        self._needs_reset = bool(terminated[0] or truncated[0])
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def _batch_action(self, action: Any) -> np.ndarray:
        space = self.action_space
        array = np.asarray(action)
        if isinstance(space, gym.spaces.Discrete):
            if array.shape not in ((), (1,)):
                raise ValueError(f"action has shape {array.shape}; {space} takes one integer")
            return array.reshape(1)
        if array.shape != space.shape:
            raise ValueError(f"action has shape {array.shape}; {space} takes an array of shape {space.shape}")
        return array[None]

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        frames = self.vector.render()
        return None if frames is None else frames[0]

    def close(self) -> None:
        self.vector.close()


def _first(obs: Any) -> Any:
    """The first sub-env's observation of a batch (arrays or a dict of arrays)."""
    if isinstance(obs, dict):
        return {key: value[0] for key, value in obs.items()}
    return obs[0]
