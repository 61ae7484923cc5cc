"""Behaviour learning inside a pretrained world model, with no real env (``wmsim train --dream``).

A pool of dreamed episodes (a :class:`~wmsim.dream.DreamSimulator`, started from the bundle's bank of
real start states and reset there when an episode ends) is advanced by the current actor; every update
imagines ``horizon`` steps from the pool's current states, so the actor and the critic see states deep
into episodes, not only their starts. The world model is not changed. The result is written back as
the bundle's ``policy.safetensors``.
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
from wmsim.config import to_dict
from wmsim.dream import DreamSimulator
from wmsim.rssm import State

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
    out: str | Path | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> DreamTrainResult:
    """Train a fresh DreamerV2 actor-critic for ``updates`` updates on dreams of ``bundle``'s model,
    from ``pool`` parallel dreamed episodes; write the bundle with its policy to ``out`` (default: the
    bundle's own directory)."""
    if bundle.path is None and out is None:
        raise ValueError("the bundle was not loaded from a directory: pass out=<directory>")
    torch.manual_seed(seed)
    sim = DreamSimulator(bundle, pool, device=device, autoreset="same_step", seed=seed)
    low, high = _bounds(bundle)
    agent = ActorCritic(config, sim.model, low, high).to(sim.device)
    sim.reset(seed=seed)
    metrics: dict[str, torch.Tensor] = {}
    bar = tqdm(range(updates), disable=not progress, unit="update", mininterval=1.0)
    start = time.perf_counter()
    for _ in bar:
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
            "pool": pool,
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


def _bounds(bundle: Bundle) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    action = bundle.spaces["action"]
    if action.get("type") != "Box":
        return None, None
    from wmsim.envs import space_from_dict

    space: Any = space_from_dict(action)
    return torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)
