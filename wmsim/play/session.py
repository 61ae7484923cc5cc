"""The shared core of ``play``, ``watch`` and ``dream_frames``: a few dreams of one world model (and,
optionally, the real env beside them) stepped together, with episode bookkeeping and drawing."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from ..bundle import Bundle
from ..dream.actions import model_action
from ..dream.backend import make_backend
from ..dream.vector_env import DreamVectorEnv
from ..envs import make_env, space_from_dict
from ..registry import resolve_model
from . import render

POLICY_OBS = ("decoded", "latent")  # "pixels" is accepted for "decoded"


@dataclass
class Track:
    """One panel's episode bookkeeping: steps, last reward, running return, finished returns, and the
    status of the current episode (``""``, ``"terminated"`` or ``"truncated"``)."""

    title: str
    step: int = 0
    reward: float = 0.0
    episode_return: float = 0.0
    returns: list[float] = field(default_factory=list)
    status: str = ""

    @property
    def done(self) -> bool:
        return bool(self.status)

    def start(self) -> None:
        self.step, self.reward, self.episode_return, self.status = 0, 0.0, 0.0, ""

    def record(self, reward: float, terminated: bool, truncated: bool) -> None:
        self.step += 1
        self.reward = float(reward)
        self.episode_return += self.reward
        if terminated or truncated:
            self.status = "terminated" if terminated else "truncated"
            self.returns.append(self.episode_return)

    def lines(self) -> list[tuple[str, tuple[int, int, int]]]:
        last = f"   last {self.returns[-1]:.2f}" if self.returns else ""
        status = self.status.upper() if self.status else "running"
        colour = render.STATUS_COLOURS.get(self.status, render.DIM_TEXT)
        return [
            (f"step {self.step}   reward {self.reward:+.2f}", render.TEXT),
            (f"return {self.episode_return:.2f}{last}", render.TEXT),
            (status, colour),
        ]


class DreamSession:
    """``num_envs`` dreams of ``model`` stepped together, and the real env beside them.

    Args:
        model: a :class:`~wmsim.Bundle`, a bundle directory or a known model name.
        num_envs: dreams shown side by side (each its own sample of the stochastic model).
        side_by_side: also step the real env (``wmsim.envs.make_env`` with the bundle's ``EnvSpec``)
            with the same actions (or a policy's own, see :meth:`step`) and show it.
        from_real: start every dream from the real env's first frame
            (:meth:`~wmsim.dream.DreamSimulator.reset_from_observation`) instead of the bundle's bank.
        policy_obs: what :meth:`policy_obs` hands a dream policy: ``"decoded"`` (decoded observations in
            the real env's format; ``"pixels"`` is its former name) or ``"latent"`` (features
            ``(D + S*K,)`` float32).
        seed: seeds the dreams, the real env and random actions; episode ``k`` uses ``seed + k``.
        scale: integer upscaling of image observations in the frames (default: about 256 pixels high).
        device, time_limit, termination: as for :class:`~wmsim.dream.DreamVectorEnv`.
        real_env: a real env to use instead of making one (it must match the bundle's spaces).

    A session ends an episode per panel (ended panels freeze and show ``TERMINATED``/``TRUNCATED``);
    once every panel has ended, the next :meth:`step` starts new episodes everywhere.
    """

    def __init__(
        self,
        model: Bundle | str | os.PathLike,
        *,
        num_envs: int = 1,
        side_by_side: bool = False,
        from_real: bool = False,
        policy_obs: str = "decoded",
        seed: int = 0,
        scale: int | None = None,
        device: str = "cpu",
        time_limit: int | None = None,
        termination: str = "threshold",
        real_env: gym.Env | None = None,
    ) -> None:
        policy_obs = {"pixels": "decoded"}.get(policy_obs, policy_obs)
        if policy_obs not in POLICY_OBS:
            raise ValueError(f"policy_obs={policy_obs!r}: choose one of {POLICY_OBS}")
        self.bundle = resolve_model(model)
        self.spec = self.bundle.env_spec
        self.seed = int(seed)
        self.policy_obs_mode = policy_obs
        self.side_by_side = side_by_side
        self.from_real = from_real
        self.dream = DreamVectorEnv(
            self.bundle,
            num_envs,
            device=device,
            obs_mode="dict",
            autoreset="disabled",
            time_limit=time_limit,
            termination=termination,
            seed=self.seed,
        )
        self.num_envs = self.dream.num_envs
        self.action_space = self.dream.single_action_space
        self.action_space.seed(self.seed)
        io = self.bundle.model.io
        self.image = bool(io.image)
        self.obs_shape = tuple(io.obs_shape)
        self._owns_real = real_env is None and (side_by_side or from_real)
        self.real_env = real_env
        if self.real_env is None and (side_by_side or from_real):
            self.real_env = make_env(self.spec, seed=self.seed)
        if self.real_env is not None:
            shape = tuple(self.real_env.observation_space.shape or ())
            if shape != self.obs_shape:
                raise ValueError(
                    f"the real env observes {self.real_env.observation_space}, the model {self.obs_shape}:"
                    f" use the env the bundle was trained on (wmsim.make_env(bundle.env_spec))"
                )
        if not self.image:
            self._scale = self._vector_scale()
        default_scale = max(1, 256 // self.obs_shape[0]) if self.image else 1
        self.scale = int(scale) if scale is not None else default_scale
        titles = [f"dream {i}" if self.num_envs > 1 else "dream" for i in range(self.num_envs)]
        self.tracks = [Track(f"{t} ({self.spec.id})") for t in titles]
        self.real_track = Track(f"real ({self.spec.id})") if side_by_side else None
        self.episodes = 0
        self.steps = 0
        self.just_reset = False
        self.pending_reset = False
        self.real_obs: np.ndarray | None = None
        self._obs: dict[str, np.ndarray] = {}
        self.reset()

    # ------------------------------------------------------------------ episodes
    def reset(self) -> None:
        """New episodes everywhere (seed ``seed + episodes so far``); dreams start from the bank, or from
        the real env's first frame with ``from_real``."""
        seed = self.seed + self.episodes
        self.episodes += 1
        if self.real_env is not None:
            self.real_obs, _ = self.real_env.reset(seed=seed)
        options = None
        if self.from_real and self.real_obs is not None:
            options = {"observation": np.repeat(np.asarray(self.real_obs)[None], self.num_envs, axis=0)}
        obs, _ = self.dream.reset(seed=seed, options=options)
        self._obs = {key: np.array(value) for key, value in obs.items()}
        for track in self._all_tracks():
            track.start()
        self.just_reset, self.pending_reset = True, False

    def sync_from_real(self) -> None:
        """Restart the dreams from the real env's current frame (the real episode goes on)."""
        if self.real_env is None or self.real_obs is None:
            raise ValueError("there is no real env to start the dreams from: use side_by_side or from_real")
        frames = np.repeat(np.asarray(self.real_obs)[None], self.num_envs, axis=0)
        obs, _ = self.dream.reset(options={"observation": frames})
        self._obs = {key: np.array(value) for key, value in obs.items()}
        for track in self.tracks:
            track.start()
        self.pending_reset = False

    def _all_tracks(self) -> list[Track]:
        return [*self.tracks, *([self.real_track] if self.real_track is not None else [])]

    @property
    def done(self) -> bool:
        """Whether every panel's episode has ended."""
        return all(track.done for track in self._all_tracks())

    # ------------------------------------------------------------------ actions and observations
    def sample_action(self) -> Any:
        """A random action of the model's action space (seeded by ``seed``)."""
        return self.action_space.sample()

    def policy_obs(self, index: int = 0) -> np.ndarray:
        """Dream ``index``'s observation for a policy (``policy_obs``: decoded observations in the real
        env's format, or latent features)."""
        return self._obs[self.policy_obs_mode][index]

    def _batch(self, action: Any) -> np.ndarray:
        """One action for every dream, or a batch of ``num_envs`` -> the batch the dream env takes."""
        array = np.asarray(action)
        n = self.num_envs
        if isinstance(self.action_space, gym.spaces.Discrete):
            if array.ndim == 0 or (array.shape == (1,) and n != 1):
                return np.full(n, int(array.reshape(-1)[0]), np.int64)
            return array.astype(np.int64, copy=False)
        shape = tuple(self.action_space.shape or ())
        if array.shape == shape:
            return np.repeat(array[None].astype(np.float32), n, axis=0)
        return array.astype(np.float32, copy=False)

    def step(self, action: Any, real_action: Any = None) -> None:
        """One step: every running dream takes ``action`` (one action for all, or a batch
        ``(num_envs, ...)``), the real env ``real_action`` (default: the first dream's action).
        Right after every panel has ended, this starts new episodes instead (the actions are unused)."""
        if self.pending_reset:
            self.reset()
            return
        self.just_reset = False
        batch = self._batch(action)
        obs, reward, terminated, truncated, _ = self.dream.step(batch)
        for i, track in enumerate(self.tracks):
            if track.done:
                continue
            track.record(float(reward[i]), bool(terminated[i]), bool(truncated[i]))
            for key in self._obs:
                self._obs[key][i] = obs[key][i]
        real = self.real_track
        if self.real_env is not None and real is not None and not real.done:
            act = real_action if real_action is not None else batch[0]
            if isinstance(self.action_space, gym.spaces.Discrete):
                act = int(np.asarray(act))
            else:
                act = np.asarray(act, np.float32)
            self.real_obs, r, term, trunc, _ = self.real_env.step(act)
            real.record(float(r), bool(term), bool(trunc))
        self.steps += 1
        if self.done:
            self.pending_reset = True

    # ------------------------------------------------------------------ drawing
    def _vector_scale(self) -> np.ndarray:
        """Per-dimension plot magnitudes: the observation bounds where finite; elsewhere (``_grows``) the
        largest magnitude shown so far, starting from twice the bank's start observations (at least 1)."""
        box = space_from_dict(self.bundle.spaces["observation"])
        assert isinstance(box, gym.spaces.Box)
        bound = np.maximum(np.abs(box.low), np.abs(box.high)).astype(np.float64)
        seen = self.bundle.start_states.obs.float().abs().amax(0).numpy().astype(np.float64)
        self._grows = ~(np.isfinite(bound) & (bound < 1e6))
        return np.where(self._grows, np.maximum(2.0 * seen, 1.0), bound)

    def _fit_scale(self, values: np.ndarray) -> None:
        finite = np.where(np.isfinite(values), np.abs(values), 0.0)
        self._scale = np.where(self._grows, np.maximum(self._scale, finite), self._scale)

    def _body(self, index: int | None) -> np.ndarray:
        """The picture of dream ``index`` (None: the real env)."""
        if self.image:
            obs = self.real_obs if index is None else self._obs["decoded"][index]
            assert obs is not None
            return render.upscale(render.to_rgb(obs), self.scale)
        series = []
        if index is not None:
            series.append(render.Series("dream", self._obs["decoded"][index], render.DREAM_COLOUR))
        if self.real_obs is not None and self.real_track is not None:
            series.append(render.Series("real", np.asarray(self.real_obs), render.REAL_COLOUR, index is None))
        return render.bar_plot(series, self._scale, width=max(256, 48 * self.obs_shape[0]))

    def frame(self) -> np.ndarray:
        """The current view ``(H, W, 3)`` uint8: one panel per dream (and one for the real env), each the
        observation (images, upscaled by ``scale``) or a bar plot of the state vector (dream bars
        filled, the real state's outlined beside them), with the step, reward, return and episode status."""
        if not self.image:
            shown = [self._obs["decoded"][i] for i in range(self.num_envs)]
            if self.real_obs is not None and self.real_track is not None:
                shown.append(np.asarray(self.real_obs))
            for values in shown:
                self._fit_scale(np.asarray(values, np.float64))
        panels = [render.panel(self._body(i), t.title, t.lines()) for i, t in enumerate(self.tracks)]
        if self.real_track is not None:
            panels.append(render.panel(self._body(None), self.real_track.title, self.real_track.lines()))
        columns = len(panels) if len(panels) <= 4 else math.ceil(math.sqrt(len(panels)))
        return render.grid(panels, columns)

    def close(self) -> None:
        self.dream.close()
        if self._owns_real and self.real_env is not None:
            self.real_env.close()


class LatentFilterPolicy:
    """A policy of latent features ``(D + S*K,)`` acting on real observations: the bundle's posterior
    filter turns each real observation (and the previous action) into the features a latent dream hands
    out, as :class:`~wmsim.dream.LatentObservation` does (the same backend call). Call :meth:`reset` at
    each episode start.

    ``latent_policy(feat (F,) float32) -> action`` (an int, or a float32 array ``(A,)``).
    """

    def __init__(
        self,
        model: Bundle | str | os.PathLike,
        latent_policy: Callable[[np.ndarray], Any],
        *,
        device: str = "cpu",
        seed: int = 0,
        backend: str = "torch",
    ) -> None:
        self.sim = make_backend(backend, model, 1, device=device, seed=seed)
        self.sim.prepare(posterior=True)
        self.latent_policy = latent_policy
        self.action_space = space_from_dict(self.sim.spaces["action"])
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self.sim.seed(self.seed)
        self._feat: Any = None
        self._action: Any = None
        if hasattr(self.latent_policy, "reset"):
            self.latent_policy.reset()

    def __call__(self, obs: np.ndarray) -> Any:
        sim = self.sim
        self._feat = sim.posterior(sim.from_numpy(np.asarray(obs)[None]), self._feat, self._action)
        action = self.latent_policy(sim.to_numpy(self._feat)[0])
        self._action = sim.from_numpy(model_action(action, self.action_space))
        return action
