"""Grow an offline dataset with real episodes of a policy trained in its dream (``wmsim add-data``).

A policy trained only in a world model finds the model's errors: on the offline Pong model the
DreamerV2 actor-critic held "up" at every step, because the model's reward credited moving up with
points. DreamerV2 never meets this for long: it plays its policy in the real env and trains on what
happens. This module is that step for an offline run (data aggregation): play the policy of a bundle
in the run's real env, each action replaced by a uniformly random one with probability ``epsilon``,
append the episodes to ``LOGDIR/replay`` and record them in ``LOGDIR/dataset.json`` under
``additions``. Running the run's ``wmsim pretrain`` command again then fits on the grown dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from wmsim.bundle import Bundle
from wmsim.config import from_dict
from wmsim.envs import make_env
from wmsim.fileio import atomic_write_json
from wmsim.registry import resolve_model
from wmsim.world_model import IOSpec

from .checkpoint import latest_checkpoint, read_checkpoint_state
from .dreamerv2.agent import agent_from_bundle
from .dreamerv2.policy import RealEnvPolicy
from .offline import (
    DATASET_FILE,
    LOSS_STAGES,
    PretrainConfig,
    env_spec_of_config,
    read_pretrain_settings,
    record_episode,
    replay_capacity,
    return_summary,
)
from .replay import Replay

log = logging.getLogger(__name__)

ADDITIONS = "additions"


def read_pretrain_config(logdir: Path) -> PretrainConfig:
    """The settings of the pretraining run in ``logdir``, or a clear error if it holds none."""
    data = read_pretrain_settings(logdir)
    if data is None or not (logdir / DATASET_FILE).is_file():
        raise FileNotFoundError(
            f"{logdir} holds no pretraining run with a dataset: run `wmsim pretrain --logdir {logdir}` first"
        )
    data.pop(LOSS_STAGES, None)
    return from_dict(PretrainConfig, data)


def add_policy_data(
    logdir: str | Path,
    policy: str | Path | Bundle,
    steps: int,
    *,
    epsilon: float = 0.1,
    seed: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Append ``steps`` real agent steps of ``policy``'s DreamerV2 actor (sampled, each action random
    with probability ``epsilon``) to the dataset of the pretraining run in ``logdir``.

    Episodes are played whole, except the last, which is cut (truncated) at the budget. Returns the
    record added to ``dataset.json`` (steps, episodes, returns, the policy's source and the update of
    the run's latest checkpoint). Refuses a policy-less bundle, a bundle of another env, and a budget
    the replay cannot hold without evicting data.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: add at least one step")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon={epsilon}: a probability in [0, 1]")
    logdir = Path(logdir)
    config = read_pretrain_config(logdir)
    if config.task_ids:
        raise ValueError(
            f"{logdir} is a multi-task pretraining run ({config.tasks}): adding policy data to it is not"
            " supported yet; add data to a single-task run"
        )
    bundle = resolve_model(policy)
    spec = env_spec_of_config(config)
    if bundle.env_spec.id != spec.id:
        raise ValueError(f"the policy's bundle plays {bundle.env_spec.id}, the run at {logdir} is {spec.id}")
    if not bundle.has_policy:
        raise ValueError(
            f"{bundle.path} holds no policy: train one first, e.g."
            f" `wmsim train --dream {bundle.path} --dream-replay {logdir / 'replay'}`"
        )
    env = make_env(spec, seed=seed)
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    if io.obs_shape != bundle.model.io.obs_shape:
        env.close()
        raise ValueError(f"the run observes {io.obs_shape}, the policy's model {bundle.model.io.obs_shape}")
    capacity = replay_capacity(config)
    replay = Replay(logdir / "replay", capacity, chunk_length=1024, seed=config.seed)
    room = capacity - replay.total_steps
    if steps + steps // 10 + 1 > room:  # agent steps plus one first step per episode
        env.close()
        raise ValueError(
            f"the run's replay holds {replay.total_steps} of {capacity} steps: {steps} more would evict"
            f" the oldest data; add at most {max(room * 10 // 11 - 1, 0)}"
        )
    actor_critic = agent_from_bundle(bundle, "cpu")
    agent = RealEnvPolicy(bundle.model, actor_critic.actor, env.action_space, actor_critic.to_model_action)
    record = _play(env, agent, replay, io, steps, epsilon, seed, progress)
    env.close()
    replay.flush()
    checkpoint = latest_checkpoint(logdir)
    record.update(
        {
            "policy": str(bundle.path),
            "policy_sha256": _policy_digest(bundle),
            "epsilon": epsilon,
            "seed": seed,
            "after_update": read_checkpoint_state(checkpoint)[0] if checkpoint is not None else 0,
        }
    )
    stats_file = logdir / DATASET_FILE
    stats = json.loads(stats_file.read_text())
    stats.setdefault(ADDITIONS, []).append(record)
    atomic_write_json(stats_file, stats)
    log.info("added to %s: %s", logdir, record)
    return record


def _play(
    env: gym.Env,
    agent: RealEnvPolicy,
    replay: Replay,
    io: IOSpec,
    steps: int,
    epsilon: float,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    random_actions = 0

    def act(obs: Any) -> Any:
        nonlocal random_actions
        action = agent.act(obs)
        if rng.random() < epsilon:
            action = env.action_space.sample()
            agent.took(action)  # the policy's filter follows the action really taken
            random_actions += 1
        return action

    returns: list[float] = []
    played, episode = 0, 0
    start = time.perf_counter()
    bar = tqdm(total=steps, disable=not progress, unit="step", desc="policy data", mininterval=1)
    while played < steps:
        agent.reset()
        total, length = record_episode(env, act, replay, io, seed + episode, bar, max_steps=steps - played)
        returns.append(total)
        played += length
        episode += 1
    bar.close()
    return {
        "behaviour": "policy",
        "steps": played,
        "episodes": episode,
        "random_actions": random_actions,
        **return_summary(returns),
        "seconds": time.perf_counter() - start,
    }


def _policy_digest(bundle: Bundle) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted((bundle.policy_tensors or {}).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
