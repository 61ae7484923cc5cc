"""A real env seen through the world model: observations become the same latent features a dream hands
out, by running the posterior filter on the real observations. A policy trained on ``latent`` (or
``dict``) dreams acts in the real game unchanged. Either backend; no torch or onnxruntime import here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from .actions import model_action
from .backend import make_backend
from .vector_env import latent_space

if TYPE_CHECKING:
    from ..bundle import Bundle


class LatentObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace a real env's observations by the posterior latent features ``(D + S*K,)`` of ``model``.

    The filter state is reset at ``reset`` and updated at every ``step`` with the action taken and the
    new observation, exactly as the world model was trained (posterior samples, seeded by ``seed``).
    The env must be the one the bundle was trained on (same observation and action spaces).

    Args:
        env: the real env.
        model: a :class:`~wmsim.Bundle`, a bundle directory, a known model name or a Hub repo id.
        backend: ``"torch"`` (default) or ``"onnxruntime"`` (the bundle's exported posterior graph).
        device: as for :class:`~wmsim.dream.DreamVectorEnv` (default ``"auto"``).
        seed: seeds the posterior samples (default 0; ``reset(seed=...)`` re-seeds them).
        obs_mode: ``"latent"`` (default) or ``"dict"``: ``{"latent": features, "decoded": the real
            observation}``, the real counterpart of a dream's ``obs_mode="dict"``.
        providers, onnx_dir, threads: onnxruntime only.
    """

    def __init__(
        self,
        env: gym.Env,
        model: Bundle | str | os.PathLike,
        *,
        backend: str = "torch",
        device: Any = "auto",
        seed: int | None = None,
        obs_mode: str = "latent",
        **backend_options: Any,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            model=model if isinstance(model, (str, os.PathLike)) else None,
            backend=backend,
            device=device,
            seed=seed,
            obs_mode=obs_mode,
        )
        super().__init__(env)
        if obs_mode not in ("latent", "dict"):
            raise ValueError(
                f"obs_mode={obs_mode!r}: a real env seen through the model is 'latent' or 'dict'"
            )
        self.sim = make_backend(
            backend, model, 1, device=device, seed=seed if seed is not None else 0, **backend_options
        )
        dims = self.sim.dims
        if tuple(env.observation_space.shape or ()) != tuple(dims.obs_shape):
            raise ValueError(
                f"the real env's observation space {env.observation_space} does not match the model's"
                f" observations {dims.obs_shape}: wrap the env the bundle was trained on"
                f" (wmsim.make_env(bundle.env_spec))"
            )
        if isinstance(env.action_space, gym.spaces.Discrete) != dims.discrete:
            raise ValueError(
                f"the real env's action space {env.action_space} does not match the model's"
                f" ({'discrete' if dims.discrete else 'continuous'}) actions"
            )
        self.sim.prepare(posterior=True)
        self.obs_mode = obs_mode
        latent = latent_space(dims)
        self.observation_space = (
            latent
            if obs_mode == "latent"
            else gym.spaces.Dict({"latent": latent, "decoded": env.observation_space})
        )
        self._feat: Any = None

    @property
    def model(self) -> Any:
        """The backend's model: a private ``WorldModel`` copy (torch) or the exported graphs (onnxruntime)."""
        return self.sim.model  # type: ignore[attr-defined]

    def _filter(self, obs: Any, action: np.ndarray | None) -> Any:
        sim = self.sim
        batch = sim.from_numpy(np.asarray(obs)[None])
        if action is None:
            self._feat = sim.posterior(batch)
        else:
            self._feat = sim.posterior(batch, self._feat, sim.from_numpy(action))
        latent = sim.to_numpy(self._feat)[0]
        return latent if self.obs_mode == "latent" else {"latent": latent, "decoded": obs}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.sim.seed(seed)
        return self._filter(obs, None), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return (
            self._filter(obs, model_action(action, self.env.action_space)),
            reward,
            terminated,
            truncated,
            info,
        )
