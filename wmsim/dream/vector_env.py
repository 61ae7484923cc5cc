"""A world model as a native Gymnasium ``VectorEnv``: every sub-env is one row of a batch of latent
states, stepped by a backend (torch tensors on a device, or onnxruntime graphs on numpy arrays; see
:mod:`wmsim.dream.backend`). Everything Gymnasium-facing is here, once, for both backends; this module
imports neither torch nor onnxruntime."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from ..envs.spaces import space_from_dict
from .actions import check_actions, check_reset
from .backend import (
    DreamBackend,
    check_num_envs,
    combined_seed,
    gym_autoreset_mode,
    make_backend,
    obs_mode_name,
    resolve_autoreset,
)

if TYPE_CHECKING:
    import torch

    from ..bundle import Bundle
    from ..onnx_format import ModelDims


def latent_space(dims: ModelDims) -> gym.spaces.Box:
    """The ``latent`` observation of one env: ``concat(deter, flat(one-hot stoch))`` ``(F,)``, float32.
    ``deter`` is a GRU state in [-1, 1]; the one-hot entries are 0 or 1."""
    return gym.spaces.Box(-1.0, 1.0, (dims.feat_size,), np.float32)


def observation_space(real: gym.Space, dims: ModelDims, obs_mode: str) -> gym.Space:
    """The single-env observation space of a dream in ``obs_mode`` whose real env observes ``real``."""
    obs_mode = obs_mode_name(obs_mode)
    if tuple(real.shape or ()) != tuple(dims.obs_shape):
        raise ValueError(
            f"the bundle's observation space {real} does not match its model's observation shape"
            f" {dims.obs_shape}: the bundle is inconsistent; re-export it"
        )
    if obs_mode == "latent":
        return latent_space(dims)
    if obs_mode == "decoded":
        return real
    return gym.spaces.Dict({"latent": latent_space(dims), "decoded": real})


class DreamVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` dreams of a world model, batched.

    Args:
        model: a loaded :class:`~wmsim.Bundle`, a bundle directory, a known model name or a Hub repo id.
        num_envs: batch size.
        backend: ``"torch"`` (default) or ``"onnxruntime"`` (the bundle's exported ONNX graphs, numpy
            only: no torch needed; see ``docs/onnx.md``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        obs_mode: ``"latent"`` (default; float32 features ``(D + S*K,)``), ``"decoded"`` (decoded
            observations in the real env's format and space: frames for an image model, state vectors
            for a vector model; ``"pixels"`` is accepted as its former name) or ``"dict"`` (both, under
            the keys ``"latent"`` and ``"decoded"``).
        dtype: compute dtype (torch: ``float32``, ``bfloat16``, ``float16``; onnxruntime: ``float32``);
            observations handed out are float32 / uint8 whatever it is.
        time_limit: truncation in steps; default the real env's.
        termination: ``"threshold"`` (continue probability < 0.5 ends the episode) or ``"sample"``.
        autoreset_mode: a :class:`gymnasium.vector.AutoresetMode` (or its value, ``"NextStep"``, ...),
            as Gymnasium's vector envs take it; ``autoreset=`` takes wmsim's names ``"next_step"``
            (default), ``"same_step"`` (``info["final_obs"]``) or ``"disabled"``. Declared in
            ``metadata["autoreset_mode"]``.
        render_mode: None or ``"rgb_array"`` (decoded frames, one per sub-env).
        seed: seeds start-state draws and latent sampling (also ``reset(seed=...)``).
        task: the task to dream, for a multi-task bundle (required there; the spaces are that task's
            real, unpadded ones); a bundle without tasks refuses it. Both backends (onnxruntime runs
            the task's exported graphs).
        providers, onnx_dir, threads: onnxruntime only (execution providers, graphs exported with
            ``--out``, intra-op threads).

    With the torch backend, :meth:`reset_tensor` / :meth:`step_tensor` also take and return tensors on
    the device, and ``step_tensor(..., differentiable=True)`` keeps the autograd graph (first-order
    policy gradients through dreamed steps, as in Dreamer and PWM).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        model: Bundle | str | os.PathLike,
        num_envs: int = 1,
        *,
        backend: str = "torch",
        device: Any = "auto",
        obs_mode: str = "latent",
        dtype: str = "float32",
        time_limit: int | None = None,
        termination: str = "threshold",
        autoreset: str | AutoresetMode | None = None,
        autoreset_mode: str | AutoresetMode | None = None,
        render_mode: str | None = None,
        seed: int | None = None,
        **backend_options: Any,
    ) -> None:
        self.num_envs = check_num_envs(num_envs)
        self.obs_mode = obs_mode_name(obs_mode)
        mode = resolve_autoreset(autoreset, autoreset_mode)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: dreams render 'rgb_array' frames (or None)")
        self.sim: DreamBackend = make_backend(
            backend,
            model,
            self.num_envs,
            device=device,
            dtype=dtype,
            time_limit=time_limit,
            termination=termination,
            autoreset=mode,
            seed=seed,
            **backend_options,
        )
        self.backend = backend
        real = space_from_dict(self.sim.spaces["observation"])
        self.single_observation_space = observation_space(real, self.sim.dims, self.obs_mode)
        self.single_action_space = space_from_dict(self.sim.spaces["action"])
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "autoreset_mode": gym_autoreset_mode(mode)}
        self.spec = None
        self.sim.prepare(step=True, decode=self.obs_mode != "latent" or render_mode is not None)
        self._discrete = isinstance(self.single_action_space, gym.spaces.Discrete)
        self._started = False

    @property
    def time_limit(self) -> int | None:
        return self.sim.time_limit

    @property
    def device(self) -> Any:
        """Where the dream runs: a ``torch.device`` (torch backend), or ``"cpu"``/``"cuda"``."""
        return self.sim.device

    @property
    def bundle(self) -> Bundle | None:
        """The loaded bundle (torch backend; None on onnxruntime, which reads the bundle's files)."""
        return self.sim.bundle  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ observations
    def _observe(self, feat: Any) -> Any:
        """Observations of ``feat`` in the backend's arrays (``latent`` in the compute dtype)."""
        if self.obs_mode == "latent":
            return feat
        if self.obs_mode == "decoded":
            return self.sim.decode(feat)
        return {"latent": feat, "decoded": self.sim.decode(feat)}

    def _to_numpy(self, obs: Any) -> Any:
        if isinstance(obs, dict):
            return {key: self.sim.to_numpy(value) for key, value in obs.items()}
        return self.sim.to_numpy(obs)

    # ------------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``).

        ``seed``: an int seeds the batch (as ``seed=`` at construction); a list, one entry per sub-env
        (an int or None), seeds each sub-env's start state with its own seed and the batch generator
        with all of them, so a sub-env's first state depends on its seed alone. One generator draws
        the latent noise of all sub-envs, so later steps depend on every seed given.
        ``options["observation"]``: real observations ``(num_envs, *obs_shape)`` to dream on from."""
        seed, mask, real = check_reset(seed, options, self.num_envs, tuple(self.sim.dims.obs_shape))
        if isinstance(seed, list):
            known = [s for s in seed if s is not None]
            if known:
                self._np_random, _ = seeding.np_random(combined_seed(known))
                self._np_random_seed = tuple(seed)  # type: ignore[assignment]  # as SyncVectorEnv reports it
                self.action_space.seed(combined_seed(known))
        elif seed is not None:
            super().reset(seed=seed)
            self.action_space.seed(seed)
        sim = self.sim
        started_mask = None if mask is None or not self._started else sim.from_numpy(mask)
        sim.reset(seed=seed, mask=started_mask)
        if real is not None:
            sim.reset_from_observation(sim.from_numpy(real), mask=started_mask)
        self._started = True
        return self._to_numpy(self._observe(sim.feat)), {}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        sim = self.sim
        result = sim.step(sim.from_numpy(check_actions(actions, self.single_action_space, self.num_envs)))
        obs = self._to_numpy(self._observe(sim.feat))
        reward = sim.to_numpy(result.reward).astype(np.float64)
        terminated = sim.to_numpy(result.terminated).astype(bool)
        truncated = sim.to_numpy(result.truncated).astype(bool)
        info: dict[str, Any] = {}
        done = terminated | truncated
        if result.final_feat is not None and done.any():
            final = self._to_numpy(self._observe(result.final_feat))
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = {k: v[i] for k, v in final.items()} if isinstance(final, dict) else final[i]
            info["final_obs"] = final_obs
            info["_final_obs"] = done
        return obs, reward, terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Decoded frames, one ``(H, W, 3)`` uint8 array per sub-env (``rgb_array``); models of vector
        observations draw each decoded state as a bar chart."""
        if self.render_mode is None:
            return None
        decoded = self.sim.to_numpy(self.sim.decode())
        return tuple(frames_to_rgb(decoded) if self.sim.dims.image else vector_frames(decoded))

    def close_extras(self, **kwargs: Any) -> None:
        self._started = False

    # ------------------------------------------------------------------ torch API
    def _torch_api(self, name: str) -> None:
        if self.sim.name != "torch":
            raise RuntimeError(
                f"{name}() is the torch backend's tensor API; this dream runs on {self.sim.name}: use the"
                " numpy reset()/step(), or backend='torch'"
            )

    def observe_tensor(self, feat: torch.Tensor | None = None) -> Any:
        """The current observation as tensors on the device (``dict`` mode: a dict of tensors)."""
        self._torch_api("observe_tensor")
        obs = self._observe(self.sim.feat if feat is None else feat)
        if isinstance(obs, dict):
            return {**obs, "latent": obs["latent"].float()}
        return obs.float() if self.obs_mode == "latent" else obs

    def action_to_tensor(self, actions: Any) -> torch.Tensor:
        """Validate a batch of numpy actions and move it to the device. Errors name the problem."""
        self._torch_api("action_to_tensor")
        return self.sim.from_numpy(check_actions(actions, self.single_action_space, self.num_envs))  # type: ignore[no-any-return]

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

    def reset_tensor(self, seed: int | None = None, observation: torch.Tensor | None = None) -> Any:
        """Reset every sub-env; returns the observation tensors on the device. With ``observation``
        (real observations ``(B, *obs_shape)``) the dreams start from those frames instead of the bank."""
        self._torch_api("reset_tensor")
        self.sim.reset(seed=seed)
        if observation is not None:
            self.sim.reset_from_observation(observation)
        self._started = True
        return self.observe_tensor()

    def step_tensor(self, action: torch.Tensor, *, differentiable: bool = False) -> tuple[Any, ...]:
        """Step with an action tensor on the device: ``(B,)`` int64 or ``(B, A)`` float. Returns
        ``(obs, reward, terminated, truncated)`` tensors on the device, no host copies. Values are not
        range-checked here (that would synchronise); the numpy :meth:`step` checks them."""
        self._torch_api("step_tensor")
        if not self._started:
            raise RuntimeError("call reset() (or reset_tensor()) before step")
        self._check_action_tensor(action)
        result = self.sim.step(action, differentiable=differentiable)  # type: ignore[call-arg]
        return self.observe_tensor(), result.reward, result.terminated, result.truncated


def frames_to_rgb(frames: np.ndarray) -> np.ndarray:
    """``(..., H, W, 1 or 3)`` uint8 -> ``(..., H, W, 3)`` uint8."""
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def vector_frames(states: np.ndarray, height: int = 64) -> np.ndarray:
    """A bar chart of each decoded state vector ``(n, dims)`` as ``(n, height, width, 3)`` uint8 frames:
    one blue bar per dimension on white, scaled to the largest magnitude, and a black zero line."""
    n, dims = states.shape
    width = max(8 * dims, 64)
    frames = np.full((n, height, width, 3), 255, np.uint8)
    mid = height // 2
    scale = np.abs(states).max(axis=1, keepdims=True) + 1e-6
    bars = (states / scale * (mid - 2)).astype(int)  # (n, dims), positive bars point up
    rows = np.arange(height)[None, :, None]
    top = np.minimum(mid, mid - bars)[:, None, :]
    bottom = np.maximum(mid, mid - bars)[:, None, :]
    inside = (rows >= top) & (rows <= bottom)  # (n, height, dims)
    column = np.arange(width)
    slot = width // dims
    which = np.minimum(column // slot, dims - 1)
    in_bar = (column % slot >= 1) & (column % slot < slot - 1) & (column < dims * slot)
    painted = inside[:, :, which] & in_bar[None, None, :]
    frames[painted] = (40, 90, 200)
    frames[:, mid, :] = 0
    return frames
