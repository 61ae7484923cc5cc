"""Behaviour learning inside a pretrained world model, with no real env (``wmsim train --dream``).

Every update imagines ``horizon`` steps from a batch of start states, which come from one of two places:

- **a replay of real experience** (``replay=``, for instance the dataset of the ``wmsim pretrain`` run
  that fitted the model): the world model's posterior states of ``batch_size`` real windows of
  ``seq_len`` steps, as in DreamerV2, where imagination starts from every posterior state of the
  world-model batch. Imagined rollouts stay ``horizon`` steps from real states, so the model's
  compounding error over long dreams never reaches the actor;
- otherwise **a pool of dreamed episodes** (a :class:`~wmsim.dream.DreamSimulator`, started from the
  bundle's bank of real start states and reset there when an episode ends), advanced by the current
  actor, so the actor and the critic see states deep into episodes, not only their starts.

The world model is not changed. The result is written back as the bundle's ``policy.safetensors``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wmsim.bundle import Bundle, save_bundle
from wmsim.config import check_at_least, to_dict
from wmsim.dream import DreamSimulator
from wmsim.dream.simulator import bundle_for_task
from wmsim.rssm import State
from wmsim.world_model import WorldModel, batch_to_torch

from ..replay import CHUNK_PATTERN, Replay
from .agent import ActorCritic, policy_for_bundle
from .config import ActorCriticConfig

log = logging.getLogger(__name__)


@dataclass
class DreamTrainResult:
    updates: int
    bundle: Path
    metrics: dict[str, float]
    #: With ``eval_every``: one :func:`critic_calibration` row per evaluation, with its update count.
    curve: list[dict[str, float]] = field(default_factory=list)


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
    dreamed episodes (see the module docstring). With ``eval_every``, every that many updates (and at
    the end) the policy plays ``eval_episodes`` real episodes and the critic is compared with the
    discounted returns that followed (:func:`critic_calibration`): the result's ``curve``. ``task``: the
    task of a multi-task bundle to learn (required there); the policy records it.
    """
    check_at_least("updates", updates, 1)
    check_at_least("pool", pool, 1)
    check_at_least("eval_every", eval_every, 0)
    check_at_least("eval_episodes", eval_episodes, 1)
    if bundle.path is None and out is None:
        raise ValueError("the bundle was not loaded from a directory: pass out=<directory>")
    if bundle.task is not None:
        raise ValueError("pass the whole multi-task bundle and task=..., not a bundle bound to one task")
    whole, bundle = bundle, bundle_for_task(bundle, task)
    torch.manual_seed(seed)
    sim = DreamSimulator(bundle, pool, device=device, autoreset="same_step", seed=seed)
    data = open_replay_for(bundle, replay, seed) if replay is not None else None
    low, high = _bounds(bundle)
    agent = ActorCritic(config, sim.model, low, high).to(sim.device)
    sim.reset(seed=seed)
    metrics: dict[str, torch.Tensor] = {}
    bar = tqdm(range(1, updates + 1), disable=not progress, unit="update", mininterval=1.0)
    curve: list[dict[str, float]] = []
    start, evaluating = time.perf_counter(), 0.0
    not_terminal = torch.zeros(pool, dtype=torch.bool, device=sim.device)  # autoreset: no pool state ends
    for update in bar:
        if data is not None:
            posts, is_terminal = real_posteriors(sim.model, data, batch_size, seq_len)
            metrics = agent.train_step(sim.model, posts, is_terminal)
        else:
            metrics = agent.train_step(sim.model, State(sim.deter, sim.stoch, sim.stoch), not_terminal)
            with torch.no_grad():  # advance the pool with the current policy
                for _ in range(config.horizon):
                    action = agent.act(sim.feat)
                    sim.step(action.argmax(-1) if sim.model.io.discrete else action)
        if eval_every and (update % eval_every == 0 or update == updates):
            tick = time.perf_counter()
            row = {"updates": float(update), **critic_calibration(bundle, agent, eval_episodes)}
            curve.append(row)
            bar.set_postfix({k: f"{v:.1f}" for k, v in row.items() if k != "updates"}, refresh=False)
            evaluating += time.perf_counter() - tick
    summary = {k: float(v) for k, v in metrics.items()}
    summary["updates_per_s"] = updates / max(time.perf_counter() - start - evaluating, 1e-9)
    target = Path(out) if out is not None else Path(str(whole.path))
    info = {
        **whole.info,
        "dream_training": {
            "task": bundle.task,
            "updates": updates,
            **(
                {"starts": "replay", "replay_steps": len(data), "batch_size": batch_size, "seq_len": seq_len}
                if data is not None
                else {"starts": "dreamed pool", "pool": pool}
            ),
            "seed": seed,
            "agent": to_dict(config),
            "metrics": summary,
            **({"curve": curve} if curve else {}),
        },
    }
    tensors, policy_config = policy_for_bundle(agent)
    if bundle.task is not None:
        policy_config["task"] = bundle.task
    save_bundle(
        target,
        whole.model,
        whole.env_spec,
        whole.spaces,
        whole.start_states,
        info,
        (tensors, policy_config),
        tasks=whole.tasks,
    )
    log.info("dream-trained policy written to %s: %s", target, json.dumps(summary))
    return DreamTrainResult(updates, target, summary, curve)


def open_replay_for(bundle: Bundle, directory: str | Path, seed: int) -> Replay:
    """Open a replay directory of real steps for ``bundle``'s model, or say what is wrong with it."""
    path = Path(directory)
    names = [CHUNK_PATTERN.match(f.name) for f in path.glob("*.npz")] if path.is_dir() else []
    ends = [int(m.group(1)) + int(m.group(2)) for m in names if m]
    if not ends:
        raise FileNotFoundError(
            f"{path} holds no replay chunks: pass the replay of a run on {bundle.env_spec.id}"
            " (for instance LOGDIR/replay of `wmsim pretrain`)"
        )
    # room for every stored step, so that opening the replay evicts (deletes) none of its chunks
    replay = Replay(path, capacity=max(ends), seed=seed)
    io = bundle.model.io
    stored = replay.sample(1, 1)
    shapes = {"obs": tuple(io.obs_shape), "action": (io.action_size,)}
    for key, shape in shapes.items():
        got = tuple(stored[key].shape[2:]) if key in stored else None
        if got != shape:
            raise ValueError(
                f"{path}: its {key} steps have shape {got}, the model of {bundle.env_spec.id} takes {shape};"
                " pass a replay recorded on the model's env"
            )
    return replay


@torch.no_grad()
def real_posteriors(
    model: WorldModel, replay: Replay, batch_size: int, seq_len: int
) -> tuple[State, torch.Tensor]:
    """The model's posterior states ``(B, T, ...)`` of ``batch_size`` real windows of ``seq_len`` steps,
    with the windows' ``is_terminal`` flags ``(B, T)``."""
    model.eval()
    batch = batch_to_torch(replay.sample(batch_size, seq_len), next(model.parameters()).device)
    posts, _ = model.observe(batch)
    return posts, batch["is_terminal"]


def _bounds(bundle: Bundle) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    action = bundle.spaces["action"]
    if action.get("type") != "Box":
        return None, None
    from wmsim.envs import space_from_dict

    space: Any = space_from_dict(action)
    return torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)
