"""Stable-Baselines3 recipes: train a third-party agent only inside a dream, then evaluate it in the
real environment the world model was learned from.

With ``obs_mode="latent"`` (or ``"dict"``) the real env is wrapped in
:class:`wmsim.dream.LatentObservation`, so the policy sees the same features in both worlds; with
``obs_mode="decoded"`` (formerly ``"pixels"``) it sees decoded observations in the dream and real ones
in the real env.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecMonitor

from wmsim.bundle import Bundle
from wmsim.data import play_episodes
from wmsim.dream.latent_wrapper import LatentObservation
from wmsim.dream.sb3 import DreamSB3VecEnv
from wmsim.dream.simulator import bundle_for_task
from wmsim.envs import make_env
from wmsim.registry import resolve_model

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C, "SAC": SAC}


@dataclass
class RealEvaluation:
    """Returns of ``episodes`` real episodes (seeds ``seed, seed + 1, ...``)."""

    returns: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def train_in_dream(
    model: Bundle | str | os.PathLike,
    *,
    algo: str = "PPO",
    total_timesteps: int = 100_000,
    num_envs: int = 16,
    obs_mode: str = "latent",
    policy: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    algo_kwargs: dict[str, Any] | None = None,
    progress_bar: bool = False,
    task: str | None = None,
) -> BaseAlgorithm:
    """Train an SB3 agent for ``total_timesteps`` dreamed steps. ``policy`` defaults to ``MlpPolicy``
    for latents and vectors, ``CnnPolicy`` for decoded images, ``MultiInputPolicy`` for ``"dict"``.
    The dreams are wrapped in ``VecMonitor``, so SB3 logs episode returns (``ep_rew_mean``).
    ``task``: the task of a multi-task bundle (required there)."""
    if algo not in ALGORITHMS:
        raise ValueError(f"algo={algo!r}: choose one of {sorted(ALGORITHMS)}")
    bundle = bundle_for_task(resolve_model(model), task)
    if algo == "SAC" and bundle.model.io.discrete:
        raise ValueError("SAC needs continuous actions; this model's actions are discrete: use PPO or A2C")
    env = VecMonitor(DreamSB3VecEnv(bundle, num_envs, obs_mode=obs_mode, device=device, seed=seed))
    if policy is None:
        decoded_images = obs_mode in ("decoded", "pixels") and bundle.model.io.image
        policy = "MultiInputPolicy" if obs_mode == "dict" else "CnnPolicy" if decoded_images else "MlpPolicy"
    agent = ALGORITHMS[algo](policy, env, seed=seed, device=device, verbose=0, **(algo_kwargs or {}))
    agent.learn(total_timesteps=total_timesteps, progress_bar=progress_bar)
    return agent


def evaluate_in_real(
    agent: BaseAlgorithm | None,
    model: Bundle | str | os.PathLike,
    *,
    episodes: int = 20,
    seed: int = 1000,
    obs_mode: str = "latent",
    deterministic: bool = True,
    max_steps: int | None = None,
    task: str | None = None,
) -> RealEvaluation:
    """Play ``agent`` (None: a uniformly random policy) in the real env of ``model``'s bundle (of its
    ``task``, for a multi-task bundle)."""
    bundle = bundle_for_task(resolve_model(model), task)
    env = make_env(bundle.env_spec, seed=seed)
    if obs_mode in ("latent", "dict"):
        env = LatentObservation(env, bundle, seed=seed, obs_mode=obs_mode)
    env.action_space.seed(seed)

    def act(obs: Any) -> Any:
        if agent is None:
            return env.action_space.sample()
        return agent.predict(obs, deterministic=deterministic)[0]

    try:
        return RealEvaluation(play_episodes(env, act, episodes, seed, max_steps=max_steps))
    finally:
        env.close()
