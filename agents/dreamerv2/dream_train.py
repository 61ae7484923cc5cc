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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from wmsim.bundle import Bundle, save_bundle
from wmsim.config import check_at_least, to_dict
from wmsim.dream import DreamSimulator
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
) -> DreamTrainResult:
    """Train a fresh DreamerV2 actor-critic for ``updates`` updates on dreams of ``bundle``'s model and
    write the bundle with its policy to ``out`` (default: the bundle's own directory).

    Imagination starts from the posterior states of ``batch_size`` x ``seq_len`` real steps of
    ``replay`` (a replay directory of the model's env) when given, otherwise from ``pool`` parallel
    dreamed episodes (see the module docstring).
    """
    check_at_least("updates", updates, 1)
    check_at_least("pool", pool, 1)
    if bundle.path is None and out is None:
        raise ValueError("the bundle was not loaded from a directory: pass out=<directory>")
    torch.manual_seed(seed)
    sim = DreamSimulator(bundle, pool, device=device, autoreset="same_step", seed=seed)
    data = open_replay_for(bundle, replay, seed) if replay is not None else None
    low, high = _bounds(bundle)
    agent = ActorCritic(config, sim.model, low, high).to(sim.device)
    sim.reset(seed=seed)
    metrics: dict[str, torch.Tensor] = {}
    bar = tqdm(range(updates), disable=not progress, unit="update", mininterval=1.0)
    start = time.perf_counter()
    for _ in bar:
        if data is not None:
            metrics = agent.train_step(sim.model, real_posteriors(sim.model, data, batch_size, seq_len))
            continue
        states = State(sim.deter, sim.stoch, sim.stoch)
        metrics = agent.train_step(sim.model, states)
        with torch.no_grad():  # advance the pool with the current policy
            for _ in range(config.horizon):
                action = agent.act(sim.feat)
                sim.step(action.argmax(-1) if sim.model.io.discrete else action)
    summary = {k: float(v) for k, v in metrics.items()}
    summary["updates_per_s"] = updates / (time.perf_counter() - start)
    target = Path(out) if out is not None else Path(str(bundle.path))
    info = {
        **bundle.info,
        "dream_training": {
            "updates": updates,
            **(
                {"starts": "replay", "replay_steps": len(data), "batch_size": batch_size, "seq_len": seq_len}
                if data is not None
                else {"starts": "dreamed pool", "pool": pool}
            ),
            "seed": seed,
            "agent": to_dict(config),
            "metrics": summary,
        },
    }
    save_bundle(
        target,
        bundle.model,
        bundle.env_spec,
        bundle.spaces,
        bundle.start_states,
        info,
        policy_for_bundle(agent),
    )
    log.info("dream-trained policy written to %s: %s", target, json.dumps(summary))
    return DreamTrainResult(updates, target, summary)


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
def real_posteriors(model: WorldModel, replay: Replay, batch_size: int, seq_len: int) -> State:
    """The model's posterior states ``(B, T, ...)`` of ``batch_size`` real windows of ``seq_len`` steps."""
    model.eval()
    batch = batch_to_torch(replay.sample(batch_size, seq_len), next(model.parameters()).device)
    posts, _ = model.observe(batch)
    return posts


def _bounds(bundle: Bundle) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    action = bundle.spaces["action"]
    if action.get("type") != "Box":
        return None, None
    from wmsim.envs import space_from_dict

    space: Any = space_from_dict(action)
    return torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)
