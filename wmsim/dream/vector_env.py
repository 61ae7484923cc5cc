"""A world model as a native Gymnasium ``VectorEnv``: every sub-env is one row of a batch of latent
states on a torch device (see :class:`~wmsim.dream.simulator.DreamSimulator`)."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from ..bundle import Bundle
from ..devices import resolve_device
from ..envs import space_from_dict
from ..registry import resolve_model
from .actions import check_actions, check_reset
from .simulator import AUTORESET_MODES, OBS_MODES, DreamSimulator

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_AUTORESET = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}


def latent_space(bundle: Bundle) -> gym.spaces.Box:
    """The ``latent`` observation of one env: ``concat(deter, flat(one-hot stoch))``, float32.
    ``deter`` is a GRU state in [-1, 1]; the one-hot entries are 0 or 1."""
    rssm = bundle.model.config.rssm
    return gym.spaces.Box(-1.0, 1.0, (rssm.feat_size,), np.float32)


def observation_space(bundle: Bundle, obs_mode: str) -> gym.Space:
    """The single-env observation space of a dream in ``obs_mode``."""
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode={obs_mode!r}: choose one of {OBS_MODES}")
    real = space_from_dict(bundle.spaces["observation"])
    if tuple(real.shape or ()) != tuple(bundle.model.io.obs_shape):
        raise ValueError(
            f"the bundle's observation space {real} does not match its model's observation shape"
            f" {bundle.model.io.obs_shape}: the bundle is inconsistent; re-export it"
        )
    if obs_mode == "latent":
        return latent_space(bundle)
    if obs_mode == "pixels":
        return real
    return gym.spaces.Dict({"latent": latent_space(bundle), "pixels": real})


class DreamVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` dreams of a world model, batched on ``device``.

    Args:
        model: a loaded :class:`~wmsim.Bundle`, a bundle directory, or a known model name.
        num_envs: batch size.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        obs_mode: ``"latent"`` (default; float32 features ``(D + S*K,)``), ``"pixels"`` (decoded
            observations in the real env's format and space) or ``"dict"`` (both).
        dtype: compute dtype of the model on the device (``float32``, ``bfloat16``, ``float16``);
            observations handed out are float32 / uint8 whatever it is.
        time_limit: truncation in steps; default the real env's.
        termination: ``"threshold"`` (continue probability < 0.5 ends the episode) or ``"sample"``.
        autoreset: ``"next_step"`` (Gymnasium's default), ``"same_step"`` or ``"disabled"``;
            declared in ``metadata["autoreset_mode"]``.
        render_mode: None or ``"rgb_array"`` (decoded frames, one per sub-env).
        seed: seeds start-state draws and latent sampling (also ``reset(seed=...)``).

    Besides the numpy API, :meth:`reset_tensor` / :meth:`step_tensor` take and return tensors on the
    device, and ``step_tensor(..., differentiable=True)`` keeps the autograd graph (first-order policy
    gradients through dreamed steps, as in Dreamer and PWM).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        model: Bundle | str | os.PathLike,
        num_envs: int = 1,
        *,
        device: str | torch.device = "auto",
        obs_mode: str = "latent",
        dtype: str = "float32",
        time_limit: int | None = None,
        termination: str = "threshold",
        autoreset: str = "next_step",
        render_mode: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be a positive integer")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: choose one of {sorted(DTYPES)}")
        if autoreset not in AUTORESET_MODES:
            raise ValueError(f"autoreset={autoreset!r}: choose one of {AUTORESET_MODES}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: dreams render 'rgb_array' frames (or None)")
        bundle = resolve_model(model)
        self.bundle = bundle
        self.device = resolve_device(device)
        self.obs_mode = obs_mode
        self.single_observation_space = observation_space(bundle, obs_mode)
        self.single_action_space = space_from_dict(bundle.spaces["action"])
        self.num_envs = int(num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "autoreset_mode": _AUTORESET[autoreset]}
        self.sim = DreamSimulator(
            bundle,
            self.num_envs,
            device=self.device,
            time_limit=time_limit,
            termination=termination,
            autoreset=autoreset,
            seed=seed,
            dtype=DTYPES[dtype],
        )
        self.spec = None
        self._discrete = isinstance(self.single_action_space, gym.spaces.Discrete)
        real = self.bundle.model.io
        self._real_image = real.image
        if not real.image and isinstance(self.single_observation_space, (gym.spaces.Box, gym.spaces.Dict)):
            box = space_from_dict(bundle.spaces["observation"])
            assert isinstance(box, gym.spaces.Box)
            self._obs_low = torch.as_tensor(box.low, device=self.device, dtype=torch.float32)
            self._obs_high = torch.as_tensor(box.high, device=self.device, dtype=torch.float32)
        self._started = False

    @property
    def time_limit(self) -> int | None:
        return self.sim.time_limit

    # ------------------------------------------------------------------ observations
    def _decoded(self, feat: torch.Tensor) -> torch.Tensor:
        obs = self.sim.decode(feat.to(self._model_dtype()))
        if self._real_image:
            return obs
        return torch.clamp(obs.float(), self._obs_low, self._obs_high)

    def _model_dtype(self) -> torch.dtype:
        return next(self.sim.model.parameters()).dtype

    def observe_tensor(self, feat: torch.Tensor | None = None) -> Any:
        """The current observation as tensors on the device (``dict`` mode: a dict of tensors)."""
        feat = self.sim.feat if feat is None else feat
        if self.obs_mode == "latent":
            return feat.float()
        if self.obs_mode == "pixels":
            return self._decoded(feat)
        return {"latent": feat.float(), "pixels": self._decoded(feat)}

    @staticmethod
    def _to_numpy(obs: Any) -> Any:
        if isinstance(obs, dict):
            return {key: value.detach().cpu().numpy() for key, value in obs.items()}
        return obs.detach().cpu().numpy()

    # ------------------------------------------------------------------ actions
    def action_to_tensor(self, actions: Any) -> torch.Tensor:
        """Validate a batch of numpy actions and move it to the device. Errors name the problem."""
        array = check_actions(actions, self.single_action_space, self.num_envs)
        dtype = torch.int64 if self._discrete else torch.float32
        return torch.as_tensor(array, device=self.device, dtype=dtype)

    def _check_action_tensor(self, action: torch.Tensor) -> None:
        n = self.num_envs
        if action.device != self.device:
            raise ValueError(f"action tensor is on {action.device}; this dream runs on {self.device}")
        if self._discrete:
            if action.shape != (n,) or action.is_floating_point():
                raise ValueError(
                    f"action tensor {tuple(action.shape)} {action.dtype}: expected ({n},) integers"
                )
        else:
            shape = (n, *self.single_action_space.shape)  # type: ignore[misc]
            if tuple(action.shape) != shape or not action.is_floating_point():
                raise ValueError(
                    f"action tensor {tuple(action.shape)} {action.dtype}: expected {shape} floats"
                )

    # ------------------------------------------------------------------ torch API
    def reset_tensor(self, seed: int | None = None, observation: torch.Tensor | None = None) -> Any:
        """Reset every sub-env; returns the observation tensors on the device. With ``observation``
        (real observations ``(B, *obs_shape)``) the dreams start from those frames instead of the bank."""
        self.sim.reset(seed=seed)
        if observation is not None:
            self.sim.reset_from_observation(torch.as_tensor(observation, device=self.device))
        self._started = True
        return self.observe_tensor()

    def step_tensor(self, action: torch.Tensor, *, differentiable: bool = False) -> tuple[Any, ...]:
        """Step with an action tensor on the device: ``(B,)`` int64 or ``(B, A)`` float. Returns
        ``(obs, reward, terminated, truncated)`` tensors on the device, no host copies. Values are not
        range-checked here (that would synchronise); the numpy :meth:`step` checks them."""
        if not self._started:
            raise RuntimeError("call reset() (or reset_tensor()) before step")
        self._check_action_tensor(action)
        result = self.sim.step(action, differentiable=differentiable)
        return self.observe_tensor(), result.reward, result.terminated, result.truncated

    # ------------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``). ``options["observation"]``: real
        observations ``(num_envs, *obs_shape)`` to dream on from. ``seed``: an int (a list is reduced to
        its first element, as one generator drives the batch)."""
        seed, mask, real = check_reset(seed, options, self.num_envs, tuple(self.bundle.model.io.obs_shape))
        if seed is not None:
            self.sim.seed(seed)
            self.action_space.seed(seed)
        if mask is not None and self._started:
            self.sim.reset(mask=torch.as_tensor(mask, device=self.device))
        else:
            self.sim.reset()
        if real is not None:
            self.sim.reset_from_observation(torch.as_tensor(real, device=self.device))
        self._started = True
        return self._to_numpy(self.observe_tensor()), {}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        action = self.action_to_tensor(actions)
        result = self.sim.step(action)
        obs = self._to_numpy(self.observe_tensor())
        reward = result.reward.cpu().numpy().astype(np.float64)
        terminated = result.terminated.cpu().numpy()
        truncated = result.truncated.cpu().numpy()
        info: dict[str, Any] = {}
        if result.final_feat is not None:
            done = terminated | truncated
            if done.any():
                final = self._to_numpy(self.observe_tensor(result.final_feat))
                final_obs = np.empty(self.num_envs, dtype=object)
                for i in np.flatnonzero(done):
                    final_obs[i] = (
                        {k: v[i] for k, v in final.items()} if isinstance(final, dict) else final[i]
                    )
                info["final_obs"] = final_obs
                info["_final_obs"] = done
        return obs, reward, terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Decoded frames, one ``(H, W, 3)`` uint8 array per sub-env (``rgb_array``)."""
        if self.render_mode is None:
            return None
        return tuple(
            frames_to_rgb(self.sim.decode().cpu().numpy())
            if self._real_image
            else _vector_frames(self.sim.decode().cpu().numpy())
        )

    def close_extras(self, **kwargs: Any) -> None:
        self._started = False


def frames_to_rgb(frames: np.ndarray) -> np.ndarray:
    """``(..., H, W, 1 or 3)`` uint8 -> ``(..., H, W, 3)`` uint8."""
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _vector_frames(states: np.ndarray, height: int = 64) -> np.ndarray:
    """A bar chart of each decoded state vector as a small image (for models of vector observations)."""
    n, dims = states.shape
    width = max(8 * dims, 64)
    frames = np.full((n, height, width, 3), 255, np.uint8)
    scale = np.abs(states).max(axis=1, keepdims=True) + 1e-6
    bar = (states / scale * (height // 2 - 2)).astype(int)
    for d in range(dims):
        x0, x1 = d * (width // dims) + 1, (d + 1) * (width // dims) - 1
        for i in range(n):
            top, bottom = sorted((height // 2, height // 2 - int(bar[i, d])))
            frames[i, top : bottom + 1, x0:x1] = (40, 90, 200)
    frames[:, height // 2, :] = 0
    return frames
