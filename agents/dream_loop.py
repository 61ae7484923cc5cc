"""Behaviour learning inside a frozen dream: the one loop that DreamerV2's actor-critic
(:func:`agents.dreamerv2.dream_train.train_in_world_model`) and PWM's first-order learner
(:func:`agents.pwm.train_pwm`) share.

Every update imagines from a batch of start states, which come from one of two places:

- **a replay of real experience** (``replay=``, for instance the dataset of the ``wmsim pretrain`` run
  that fitted the model): the world model's posterior states of ``batch_size`` real windows of
  ``seq_len`` steps, as in DreamerV2, so imagined rollouts stay a horizon away from real states;
- otherwise **a pool of dreamed episodes** (a :class:`~wmsim.dream.DreamSimulator` started from the
  bundle's bank of real start states and reset there when an episode ends), advanced by the current
  policy between updates, so the learner sees states deep into episodes, not only their starts.

The world model is not changed. With ``eval_every`` the policy plays real episodes every that many
updates (the result's ``curve``). The bundle is written with the learned policy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from wmsim.bundle import Bundle, save_bundle
from wmsim.config import check_at_least
from wmsim.dream import DreamSimulator
from wmsim.dream.simulator import bundle_for_task
from wmsim.rssm import State
from wmsim.world_model import WorldModel, batch_to_torch

from .replay import CHUNK_PATTERN, Replay

log = logging.getLogger(__name__)


class DreamLearner(Protocol):
    """What the loop needs of a behaviour learner bound to a frozen world model."""

    #: Dreamed steps the pool advances between updates.
    horizon: int

    def update(self, model: WorldModel, starts: State, is_terminal: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update from ``starts``: posterior states ``(B, T, ...)`` of real windows, or the pool's
        states ``(N, ...)``, with their ``is_terminal`` flags (same batch shape)."""
        ...

    def dream_action(self, feat: torch.Tensor) -> torch.Tensor:
        """The action ``DreamSimulator.step`` takes for features ``(N, F)`` (sampled, no gradients)."""
        ...

    def evaluate(self, bundle: Bundle, episodes: int) -> dict[str, float]:
        """Real episodes of the policy's mode: a curve row with at least ``real_return``."""
        ...

    def policy(self, task: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The policy's tensors and JSON config, as :func:`wmsim.save_bundle` stores them."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the bundle's ``info["dream_training"]`` records of the learner (its settings)."""
        ...


@dataclass
class DreamTrainResult:
    updates: int
    bundle: Path
    metrics: dict[str, float]
    #: With ``eval_every``: one row per evaluation (``updates``, ``seconds`` of training so far and the
    #: learner's :meth:`DreamLearner.evaluate` figures).
    curve: list[dict[str, float]] = field(default_factory=list)


def train_in_dream(
    bundle: Bundle,
    make_learner: Callable[[Bundle, WorldModel], DreamLearner],
    *,
    updates: int,
    pool: int,
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
    """Train the learner that ``make_learner(task_bundle, frozen_model)`` builds for ``updates`` updates
    in ``bundle``'s dream (``task``: the task of a multi-task bundle) and write the bundle with its
    policy to ``out`` (default: the bundle's own directory). See the module docstring."""
    check_at_least("updates", updates, 1)
    check_at_least("pool", pool, 1)
    check_at_least("eval_every", eval_every, 0)
    check_at_least("eval_episodes", eval_episodes, 1)
    if bundle.path is None and out is None:
        raise ValueError("the bundle was not loaded from a directory: pass out=<directory>")
    if bundle.task is not None:
        raise ValueError("pass the whole multi-task bundle and task=..., not a bundle bound to one task")
    whole, bound = bundle, bundle_for_task(bundle, task)
    torch.manual_seed(seed)
    sim = DreamSimulator(bound, pool, device=device, autoreset="same_step", seed=seed)
    model = sim.model  # a frozen copy (no parameter needs gradients)
    data = open_replay_for(bound, replay, seed) if replay is not None else None
    learner = make_learner(bound, model)
    sim.reset(seed=seed)
    metrics: dict[str, torch.Tensor] = {}
    curve: list[dict[str, float]] = []
    not_terminal = torch.zeros(pool, dtype=torch.bool, device=sim.device)  # autoreset: no pool state ends
    start, evaluating = time.perf_counter(), 0.0
    bar = tqdm(range(1, updates + 1), disable=not progress, unit="update", mininterval=1.0)
    for update in bar:
        if data is not None:
            posts, is_terminal = real_posteriors(model, data, batch_size, seq_len)
            metrics = learner.update(model, posts, is_terminal)
        else:
            metrics = learner.update(model, State(sim.deter, sim.stoch, sim.stoch), not_terminal)
            with torch.no_grad():  # advance the pool with the current policy
                for _ in range(learner.horizon):
                    sim.step(learner.dream_action(sim.feat))
        if eval_every and (update % eval_every == 0 or update == updates):
            tick = time.perf_counter()
            row = {"updates": float(update), "seconds": tick - start - evaluating}
            row.update(learner.evaluate(bound, eval_episodes))
            curve.append(row)
            bar.set_postfix({"real_return": f"{row['real_return']:.1f}"}, refresh=False)
            evaluating += time.perf_counter() - tick
    summary = {k: float(v) for k, v in metrics.items()}
    summary["updates_per_s"] = updates / max(time.perf_counter() - start - evaluating, 1e-9)
    target = Path(out) if out is not None else Path(str(whole.path))
    starts: dict[str, Any] = (
        {"starts": "replay", "replay_steps": len(data), "batch_size": batch_size, "seq_len": seq_len}
        if data is not None
        else {"starts": "dreamed pool", "pool": pool}
    )
    info = {
        **whole.info,
        "dream_training": {
            **learner.describe(),
            "task": bound.task,
            "updates": updates,
            **starts,
            "seed": seed,
            "metrics": summary,
            **({"curve": curve} if curve else {}),
        },
    }
    save_bundle(
        target,
        whole.model,
        whole.env_spec,
        whole.spaces,
        whole.start_states,
        info,
        learner.policy(bound.task),
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


def action_bounds(bundle: Bundle) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The env's ``(low, high)`` action range ``(A,)`` for a Box action space, else ``(None, None)``."""
    action = bundle.spaces["action"]
    if action.get("type") != "Box":
        return None, None
    from wmsim.envs import space_from_dict

    space: Any = space_from_dict(action)
    return torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)
