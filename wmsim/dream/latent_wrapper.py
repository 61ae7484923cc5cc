"""A real env seen through the world model: observations become the same latent features a dream hands
out, by running the posterior filter on the real observations. A policy trained on ``latent`` dreams
acts in the real game unchanged."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..bundle import Bundle
from ..devices import resolve_device
from ..registry import resolve_model
from ..rssm import State
from .vector_env import latent_space


class LatentObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace a real env's observations by the posterior latent features ``(D + S*K,)`` of ``model``.

    The filter state is reset at ``reset`` and updated at every ``step`` with the action taken and the
    new observation, exactly as the world model was trained (posterior samples, seeded by ``seed``).
    The env must be the one the bundle was trained on (same observation and action spaces).
    """

    def __init__(
        self, env: gym.Env, model: Bundle | str | os.PathLike, *, device: str = "cpu", seed: int | None = None
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, model=model if not isinstance(model, Bundle) else None, device=device, seed=seed
        )
        super().__init__(env)
        bundle = resolve_model(model)
        io = bundle.model.io
        if tuple(env.observation_space.shape or ()) != tuple(io.obs_shape):
            raise ValueError(
                f"the real env's observation space {env.observation_space} does not match the model's"
                f" observations {io.obs_shape}: wrap the env the bundle was trained on"
                f" (wmsim.make_env(bundle.env_spec))"
            )
        discrete = isinstance(env.action_space, gym.spaces.Discrete)
        if discrete != io.discrete:
            raise ValueError(
                f"the real env's action space {env.action_space} does not match the model's"
                f" ({'discrete' if io.discrete else 'continuous'}) actions"
            )
        self.device = resolve_device(device)
        import copy

        self.model = copy.deepcopy(bundle.model).to(self.device).eval()
        self.observation_space = latent_space(bundle)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed if seed is not None else 0)
        self._state: State | None = None

    def _filter(self, obs: Any, action: torch.Tensor, is_first: bool) -> np.ndarray:
        model = self.model
        with torch.no_grad():
            embed = model.encode(torch.as_tensor(np.asarray(obs)[None], device=self.device))
            prev = self._state if self._state is not None else model.rssm.initial(1, self.device)
            first = torch.tensor([is_first], device=self.device)
            self._state, _ = model.rssm.obs_step(
                prev, action, embed, first, noise=(self._noise(), self._noise())
            )
            return self._state.feat[0].float().cpu().numpy()

    def _noise(self) -> torch.Tensor:
        c = self.model.config.rssm
        return torch.rand(1, c.stoch, c.classes, device=self.device, generator=self.generator)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.generator.manual_seed(seed)
        self._state = None
        zero = torch.zeros(1, self.model.io.action_size, device=self.device)
        return self._filter(obs, zero, True), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        vector = self.model.one_hot(
            torch.as_tensor(np.asarray(action), device=self.device).reshape(
                () if self.model.io.discrete else (-1,)
            )
        )
        return self._filter(obs, vector[None].float(), False), reward, terminated, truncated, info
