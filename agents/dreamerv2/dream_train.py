"""DreamerV2's behaviour learning inside a pretrained world model, with no real env (``wmsim train
--dream``): the actor-critic in the dream loop of :mod:`agents.dream_loop` (imagination from real
replay states or from a pool of dreamed episodes). The world model is not changed; the result is
written back as the bundle's ``policy.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmsim.bundle import Bundle
from wmsim.config import to_dict
from wmsim.rssm import State
from wmsim.world_model import WorldModel

from ..dream_loop import DreamTrainResult, action_bounds, train_in_dream
from .agent import ActorCritic, policy_for_bundle
from .config import ActorCriticConfig

__all__ = ["DreamTrainResult", "critic_calibration", "train_in_world_model"]


@torch.no_grad()
def critic_calibration(
    bundle: Bundle, agent: ActorCritic, episodes: int = 5, seed: int = 10_000
) -> dict[str, float]:
    """Play the actor's mode in the real env and compare the critic with what really happened: the
    mean critic value of the posterior states visited against the mean discounted return that
    followed them (episodes are played to their end). Also the mean
    undiscounted return per episode. The discount is the learner's (``agent.config.discount``, or the
    world model's when that is 0)."""
    from wmsim.envs import make_env

    from .policy import RealEnvPolicy

    model = bundle.model
    env = make_env(bundle.env_spec, seed=seed)
    policy = RealEnvPolicy(model, agent.actor, env.action_space, agent.to_model_action, mode=True, seed=seed)
    gamma = agent.config.discount or model.config.discount
    values: list[float] = []
    targets: list[float] = []
    returns: list[float] = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        policy.reset(seed + episode)
        rewards, done = [], False
        while not done:
            action = policy.act(obs)
            assert policy.state is not None
            values.append(float(agent.critic(policy.state.feat)[0]))
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            done = terminated or truncated
        running, discounted = 0.0, []
        for reward in reversed(rewards):
            running = float(model.transform_reward(torch.tensor(reward))) + gamma * running
            discounted.append(running)
        targets.extend(reversed(discounted))
        returns.append(sum(rewards))
    env.close()
    return {
        "real_return": float(np.mean(returns)),
        "critic_value": float(np.mean(values)),
        "discounted_return": float(np.mean(targets)),
    }


class _ActorCriticLearner:
    """:class:`ActorCritic` as the dream loop's :class:`~agents.dream_loop.DreamLearner`."""

    def __init__(self, config: ActorCriticConfig, bundle: Bundle, model: WorldModel) -> None:
        low, high = action_bounds(bundle)
        self.agent = ActorCritic(config, model, low, high).to(next(model.parameters()).device)
        self.horizon = config.horizon
        self.discrete = model.io.discrete

    def update(self, model: WorldModel, starts: State, is_terminal: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.agent.train_step(model, starts, is_terminal)

    def dream_action(self, feat: torch.Tensor) -> torch.Tensor:
        action = self.agent.act(feat)
        return action.argmax(-1) if self.discrete else action

    def evaluate(self, bundle: Bundle, episodes: int) -> dict[str, float]:
        return critic_calibration(bundle, self.agent, episodes)

    def policy(self, task: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, config = policy_for_bundle(self.agent)
        if task is not None:
            config["task"] = task
        return tensors, config

    def describe(self) -> dict[str, Any]:
        return {"agent": to_dict(self.agent.config)}


def train_in_world_model(
    bundle: Bundle,
    config: ActorCriticConfig,
    *,
    updates: int = 2000,
    pool: int = 512,
    replay: str | Path | None = None,
    batch_size: int = 16,
    seq_len: int = 32,
    out: str | Path | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
    eval_every: int = 0,
    eval_episodes: int = 5,
    task: str | None = None,
) -> DreamTrainResult:
    """Train a fresh DreamerV2 actor-critic for ``updates`` updates on dreams of ``bundle``'s model and
    write the bundle with its policy to ``out`` (default: the bundle's own directory).

    Imagination starts from the posterior states of ``batch_size`` x ``seq_len`` real steps of
    ``replay`` (a replay directory of the model's env) when given, otherwise from ``pool`` parallel
    dreamed episodes (see :mod:`agents.dream_loop`). With ``eval_every``, every that many updates (and
    at the end) the policy plays ``eval_episodes`` real episodes and the critic is compared with the
    discounted returns that followed (:func:`critic_calibration`): the result's ``curve``. ``task``: the
    task of a multi-task bundle to learn (required there); the policy records it.
    """
    return train_in_dream(
        bundle,
        lambda bound, model: _ActorCriticLearner(config, bound, model),
        updates=updates,
        pool=pool,
        replay=replay,
        batch_size=batch_size,
        seq_len=seq_len,
        out=out,
        device=device,
        seed=seed,
        progress=progress,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        task=task,
    )
