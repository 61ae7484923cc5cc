"""Collecting real experience into the replay, with random actions (prefill) or the agent's.

- :class:`EnvCollector` (``num_envs=1``): one env stepped in the loop; every step goes to the replay as
  it happens, and episode ``k`` is reset with seed ``seed + k``.
- :class:`VectorEnvCollector` (``num_envs>1``): a Gymnasium vector env (``AsyncVectorEnv``, one
  process per env, or ``SyncVectorEnv``) of :func:`wmsim.envs.make_env` with autoreset disabled, so
  finished envs are reset here with seeds ``seed + k`` too (``k`` counts started episodes). Each env's
  episode is buffered and appended to the replay whole when it ends, so the replay stays one
  contiguous stream of complete episodes (as DreamerV2's own replay stores them); episodes still
  running when the run stops are not stored.

Both count their episodes in ``episodes`` (the next episode seed), which the checkpoint stores.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from wmsim.data import Step, first_step, next_step, random_policy
from wmsim.envs import EnvSpec, make_env
from wmsim.rssm import State
from wmsim.world_model import IOSpec, WorldModel

from .dreamerv2 import ActorCritic, RealEnvPolicy
from .replay import Replay


class EnvCollector:
    """One real env, stepped one transition at a time."""

    def __init__(
        self, env: gym.Env, io: IOSpec, replay: Replay, start_obs: deque[np.ndarray], seed: int, episodes: int
    ) -> None:
        self.env, self.io, self.replay, self.start_obs = env, io, replay, start_obs
        self.seed, self.episodes = seed, episodes
        self.policy: RealEnvPolicy | None = None
        self.obs: np.ndarray | None = None

    def begin(self, action_seed: int, agent: ActorCritic | None, model: WorldModel) -> None:
        """Seed the random actions, build the agent's policy (if any) and reset the env."""
        self.env.action_space.seed(action_seed)
        self.random = random_policy(self.env.action_space)
        if agent is not None:
            self.policy = RealEnvPolicy(
                model, agent.actor, self.env.action_space, agent.to_model_action, seed=None
            )
        self.obs = self._reset()

    def _reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed + self.episodes)
        self.replay.add(first_step(obs, self.io))
        self.start_obs.append(obs)
        return obs

    def step(self, use_agent: bool) -> int:
        """One env step (the agent's action when ``use_agent`` and there is an agent); returns 1."""
        assert self.obs is not None, "call begin() first"
        action = self.policy.act(self.obs) if use_agent and self.policy else self.random(self.obs)
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.replay.add(next_step(obs, action, float(reward), terminated, truncated, self.io))
        if terminated or truncated:
            self.episodes += 1
            obs = self._reset()
            if self.policy is not None:
                self.policy.reset()
        self.obs = obs
        return 1

    def close(self) -> None:
        """The env belongs to the trainer, which closes it."""


VectorEnv = gym.vector.SyncVectorEnv | gym.vector.AsyncVectorEnv


def make_vector_env(spec: EnvSpec, num_envs: int, seed: int, asynchronous: bool) -> VectorEnv:
    """``num_envs`` copies of the real env, autoreset disabled (the collector resets them)."""
    fns = [functools.partial(make_env, spec, seed=seed + i) for i in range(num_envs)]
    if asynchronous:
        # spawn: the workers start clean instead of forking a process that holds torch threads (or CUDA)
        return gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=AutoresetMode.DISABLED)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED)


class VectorEnvCollector:
    """``num_envs`` real envs stepped together; complete episodes go to the replay."""

    def __init__(
        self,
        envs: VectorEnv,
        io: IOSpec,
        replay: Replay,
        start_obs: deque[np.ndarray],
        seed: int,
        episodes: int,
    ) -> None:
        self.envs, self.io, self.replay, self.start_obs = envs, io, replay, start_obs
        self.seed, self.episodes = seed, episodes
        self.num_envs = envs.num_envs
        self.policy: BatchPolicy | None = None
        self.buffers: list[list[Step]] = [[] for _ in range(self.num_envs)]
        self.obs: np.ndarray | None = None

    def begin(self, action_seed: int, agent: ActorCritic | None, model: WorldModel) -> None:
        self.envs.action_space.seed(action_seed)
        if agent is not None:
            self.policy = BatchPolicy(model, agent, self.envs.single_action_space, self.num_envs)
        self.obs = self._reset(np.ones(self.num_envs, np.bool_))

    def _seeds(self, mask: np.ndarray) -> list[int | None]:
        seeds: list[int | None] = []
        for reset in mask:
            seeds.append(self.seed + self.episodes if reset else None)
            self.episodes += int(reset)
        return seeds

    def _reset(self, mask: np.ndarray) -> np.ndarray:
        seeds = self._seeds(mask)
        if mask.all():
            obs, _ = self.envs.reset(seed=seeds)
        else:
            obs, _ = self.envs.reset(seed=seeds, options={"reset_mask": mask})
        for i in np.flatnonzero(mask):
            self.buffers[i] = [first_step(obs[i], self.io)]
            self.start_obs.append(obs[i])
        if self.policy is not None:
            self.policy.reset(mask)
        return obs

    def step(self, use_agent: bool) -> int:
        """One step of every env; returns ``num_envs``."""
        assert self.obs is not None, "call begin() first"
        if use_agent and self.policy is not None:
            actions = self.policy.act(self.obs)
        else:
            actions = self.envs.action_space.sample()
        obs, rewards, terminated, truncated, _ = self.envs.step(actions)
        for i in range(self.num_envs):
            self.buffers[i].append(
                next_step(obs[i], actions[i], float(rewards[i]), terminated[i], truncated[i], self.io)
            )
        done = np.logical_or(terminated, truncated)
        if done.any():
            for finished in np.flatnonzero(done):
                for transition in self.buffers[finished]:
                    self.replay.add(transition)
            obs = self._reset(done)
        self.obs = obs
        return self.num_envs

    def close(self) -> None:
        self.envs.close()


class BatchPolicy:
    """The actor acting in ``num_envs`` real envs at once through the world model's posterior filter
    (the batched form of :class:`~agents.dreamerv2.RealEnvPolicy`)."""

    def __init__(self, model: WorldModel, agent: ActorCritic, action_space: gym.Space, num_envs: int) -> None:
        self.model, self.agent, self.action_space = model, agent, action_space
        self.device = next(model.parameters()).device
        self.state: State = model.rssm.initial(num_envs, self.device)
        self.prev_action = torch.zeros(num_envs, model.io.action_size, device=self.device)
        self.first = torch.ones(num_envs, dtype=torch.bool, device=self.device)

    def reset(self, mask: np.ndarray) -> None:
        """Mark the envs in ``mask`` as starting a new episode."""
        self.first |= torch.as_tensor(mask, device=self.device)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> Any:
        """Env actions for the batch of observations: int indices or float32 arrays ``(num_envs, A)``."""
        obs_t = torch.as_tensor(obs, device=self.device)
        self.state, _ = self.model.obs_step(self.state, self.prev_action, obs_t, self.first)
        self.first = torch.zeros_like(self.first)
        action = self.agent.actor(self.state.feat).sample()
        self.prev_action = self.agent.to_model_action(action)
        if self.model.io.discrete:
            return self.prev_action.argmax(-1).cpu().numpy()
        assert isinstance(self.action_space, gym.spaces.Box)
        low, high = self.action_space.low, self.action_space.high
        return np.clip(self.prev_action.cpu().numpy(), low, high).astype(np.float32)
