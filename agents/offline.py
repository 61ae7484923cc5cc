"""Pretrain a world model on an offline dataset (the PWM recipe), then learn policies inside it.

1. **Collect** ``data_steps`` real steps with a behaviour policy (``random``, ``scripted`` or ``mixed``;
   see :mod:`agents.behaviours`) into an on-disk replay, or with ``dataset`` load the episodes of a Minari
   dataset into it instead (:mod:`agents.datasets`): the two data sources fill the same replay.
2. **Fit** the world model on sequences sampled from that fixed dataset for ``updates`` gradient steps,
   checkpointing every ``checkpoint_every`` updates (rerun the same command to resume).
3. **Bundle** the model with start states taken from the dataset's episode starts.

Policies are then learned inside the bundle: ``wmsim train --dream BUNDLE`` (DreamerV2 actor-critic) or
``agents.sb3.train_in_dream`` (any SB3 algorithm).

CLI: ``wmsim pretrain --env atari/Pong --behaviour mixed --data_steps 60000 --updates 5000``.

``wmsim export-dataset LOGDIR --out DIR`` writes a run's dataset in Minari's format.

With ``--tasks`` (several env ids) one multi-task world model is fitted on the datasets of all of them
(:class:`agents.multitask.MultiTaskPretrainer`, the PWM setting).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from wmsim.bundle import StartStates, encode_start_states, encode_window_states, save_bundle
from wmsim.config import (
    LossConfig,
    WorldModelConfig,
    check_at_least,
    check_choice,
    from_dict,
    model_preset,
    to_dict,
)
from wmsim.data import first_step, next_step
from wmsim.devices import resolve_device
from wmsim.envs import EnvSpec, describe_spaces, make_env
from wmsim.fileio import atomic_write_json, ensure_directory
from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer, batch_to_torch

from .behaviours import BEHAVIOURS, behaviour_for
from .checkpoint import (
    METRICS_FILE,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint_state,
    remove_killed_writes,
    rewind_logs,
    save_checkpoint,
)
from .datasets import DataSource, MinariSource, return_summary
from .replay import Replay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Offline world-model pretraining. Steps are agent steps (after action repeat)."""

    env: str = field(default="atari/Pong", metadata={"help": "env id: atari/Pong, CartPole-v1, ..."})
    env_obs: str = field(default="", metadata={"help": "observation type override: pixels or state"})
    behaviour: str = field(default="mixed", metadata={"help": "random, scripted or mixed"})
    data_steps: int = field(default=60_000, metadata={"help": "real steps in the dataset"})
    updates: int = field(default=5_000, metadata={"help": "world-model gradient updates"})
    batch_size: int = 16
    seq_len: int = 50
    prioritize_ends: bool = field(
        default=True, metadata={"help": "sample the windows at episode ends more often (DreamerV2)"}
    )
    logdir: str = field(default="runs/pretrain", metadata={"help": "run directory (resumed if it exists)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU), bf16 or fp32"})
    seed: int = 0
    checkpoint_every: int = field(default=500, metadata={"help": "updates between checkpoints"})
    start_states: int = field(default=256, metadata={"help": "start states kept for the bundle"})
    start_context: int = field(
        default=0,
        metadata={
            "help": "0: the start states are the first observations of episodes; N > 0: posterior"
            " states after N real steps ending at random points of the dataset's episodes, so"
            " dreams begin in every phase of an episode (single-task runs)"
        },
    )
    tasks: str = field(
        default="",
        metadata={
            "help": "comma-separated env ids (dmc/walker-walk,dmc/cheetah-run,...) for one multi-task model"
            " over all of them (replaces --env; data_steps and start_states count per task)"
        },
    )
    task_embed: int = field(default=32, metadata={"help": "size of the learned task embedding (--tasks)"})
    init_from: str = field(
        default="",
        metadata={
            "help": "a bundle (folder or registered name, e.g. Pong) whose world-model weights start"
            " this run: fine-tuning on this run's data, e.g. with new loss weights; the model's"
            " architecture and spaces must be the bundle's"
        },
    )
    dataset: str = field(
        default="",
        metadata={
            "help": "a Minari dataset folder to fit on instead of collecting (e.g. one that `wmsim"
            " export-dataset` wrote); its spaces must be the env's (the replay holds --data_steps + 100,000"
            " steps: raise --data_steps for a larger dataset). With --tasks: one folder per task,"
            " comma-separated in the order of --tasks, or one folder holding a dataset per task"
            " (DIR/<task>)"
        },
    )
    model: WorldModelConfig = field(default_factory=lambda: model_preset("small"))

    def __post_init__(self) -> None:
        for name, low in (
            ("seq_len", 2),
            ("batch_size", 1),
            ("updates", 1),
            ("checkpoint_every", 1),
            ("start_states", 1),
        ):
            check_at_least(name, getattr(self, name), low)
        check_at_least("data_steps", self.data_steps, self.seq_len, "seq_len")
        check_choice("behaviour", self.behaviour, BEHAVIOURS)
        check_at_least("task_embed", self.task_embed, 1)
        check_at_least("start_context", self.start_context, 0)
        if self.start_context and self.tasks:
            raise ValueError("start_context: mid-episode start states are for single-task runs; drop --tasks")
        ids = [t for t in self.tasks.split(",")] if self.tasks else []
        if any(not t.strip() for t in ids) or len(set(ids)) != len(ids):
            raise ValueError(
                f"tasks={self.tasks!r}: give distinct env ids separated by commas, e.g."
                " dmc/cartpole-swingup,dmc/walker-walk"
            )
        folders = [p.strip() for p in self.dataset.split(",")] if self.dataset else []
        if any(not p for p in folders):
            raise ValueError(f"dataset={self.dataset!r}: an empty folder name; give Minari dataset folders")
        if len(folders) > 1 and not ids:
            raise ValueError(f"dataset={self.dataset!r}: a single-task run takes one dataset folder")
        if len(folders) > 1 and len(folders) != len(ids):
            raise ValueError(
                f"dataset={self.dataset!r}: {len(folders)} folders for {len(ids)} tasks: give one dataset"
                " folder per task, in the order of --tasks, or one folder holding a dataset per task"
                " (DIR/<task>)"
            )
        if self.env_obs not in ("", "pixels", "state"):
            raise ValueError(f"env_obs={self.env_obs!r}: choose 'pixels', 'state' or leave empty")

    @property
    def task_ids(self) -> list[str]:
        """The env ids of ``tasks`` (empty for a single-task run)."""
        return [t.strip() for t in self.tasks.split(",")] if self.tasks else []


LOSS_STAGES = "loss_stages"
CONFIG_FILE = "pretrain_config.json"
DATASET_FILE = "dataset.json"


def read_pretrain_settings(logdir: Path) -> dict[str, Any] | None:
    """The saved settings (JSON) of the pretraining run in ``logdir``, None when it holds none, or a
    clear error naming the file when it cannot be read."""
    saved = logdir / CONFIG_FILE
    if not saved.exists():
        return None
    try:
        data = json.loads(saved.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(
            f"{saved} is not a wmsim pretraining config ({exc}): delete it and rerun the run's original"
            " command to resume it, or pass another --logdir"
        ) from exc
    return data


def _without_loss(value: Any, key: str) -> Any:
    """A saved setting with the loss weights left out (they may change between stages of a run)."""
    if key == "model" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "loss"}
    return value


def replay_capacity(config: PretrainConfig) -> int:
    """Steps the run's replay holds: the dataset plus room for policy data (``wmsim add-data``)."""
    return config.data_steps + 100_000


def env_spec_of_config(config: PretrainConfig) -> EnvSpec:
    overrides = {"obs_type": config.env_obs} if config.env_obs else {}
    return EnvSpec.from_id(config.env, **overrides)


def record_episode(
    env: gym.Env,
    act: Callable[[Any], Any],
    replay: Replay,
    io: IOSpec,
    seed: int,
    bar: tqdm,
    max_steps: int | None = None,
) -> tuple[float, int]:
    """Play one episode from ``env.reset(seed=seed)`` with ``act(obs) -> action`` and append every step
    to ``replay``; the episode is cut (truncated) after ``max_steps`` agent steps. Returns its return
    and its number of agent steps."""
    obs, _ = env.reset(seed=seed)
    replay.add(first_step(obs, io))
    total, steps, done = 0.0, 0, False
    while not done:
        action = act(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        truncated = truncated or (max_steps is not None and steps >= max_steps)
        replay.add(next_step(obs, action, float(reward), terminated, truncated, io))
        total += float(reward)
        done = terminated or truncated
        bar.update(1)
    return total, steps


@dataclass
class Collection:
    """Real episodes of a behaviour policy, played until the replay holds ``steps`` steps: the data
    source of a run without a dataset (the other is :class:`agents.datasets.MinariSource`).

    ``seed`` seeds the behaviour's random numbers and the env's action space; episode ``i`` starts from
    ``env.reset(seed=episode_seed + i)``. ``label`` is the behaviour as the record names it."""

    env: gym.Env
    env_id: str
    behaviour: str
    steps: int
    seed: int
    episode_seed: int
    label: str = ""

    def loaded(self, replay: Replay, record: Any) -> bool:
        return record is not None and replay.total_steps >= self.steps

    def fill(self, replay: Replay, io: IOSpec, *, progress: bool, desc: str) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        self.env.action_space.seed(self.seed)
        returns: list[float] = []
        bar = tqdm(total=self.steps, disable=not progress, unit="step", desc=desc, mininterval=1)
        episode = 0
        while replay.total_steps < self.steps:
            act = behaviour_for(self.behaviour, self.env_id, self.env, episode, rng)
            total, _ = record_episode(self.env, act, replay, io, self.episode_seed + episode, bar)
            returns.append(total)
            episode += 1
        bar.close()
        return {
            "behaviour": self.label or self.behaviour,
            "steps": replay.total_steps,
            "episodes": episode,
            **return_summary(returns),
        }


def read_dataset_record(logdir: Path) -> dict[str, Any] | None:
    """The run's dataset record (``dataset.json``), None when it has none yet."""
    path = logdir / DATASET_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fix = "delete it to gather the data again"
        raise ValueError(f"{path} is not a dataset record ({exc}): {fix}") from exc
    return record


class OfflinePretrainer:
    """Collect, fit and bundle; every phase resumes from what ``logdir`` already holds."""

    def __init__(self, config: PretrainConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self._open_envs()  # a --dataset is checked against the env here, before anything is written
        self.logdir = ensure_directory(config.logdir, "--logdir")
        remove_killed_writes(self.logdir)
        self._check_run_dir()
        self.device = resolve_device(config.device)
        self.io = self._open_data()
        torch.manual_seed(config.seed)
        self.model = WorldModel(config.model, self.io).to(self.device)
        if config.init_from and latest_checkpoint(self.logdir) is None:
            self.start_from_bundle(config.init_from)  # before any data is collected: a mismatch costs nothing
        self.trainer = WorldModelTrainer(self.model, precision=config.precision)
        self.updates = 0
        self.data_stats: dict[str, Any] = {}
        self.wall_clock: dict[str, float] = {}

    def _open_envs(self) -> None:
        """Make the real env and the data source (collection, or the ``dataset``)."""
        c = self.config
        self.spec = env_spec_of_config(c)
        self.env = make_env(self.spec, seed=c.seed)
        recorded = read_dataset_record(Path(c.logdir))
        folder = c.dataset or None
        self.source = self.data_source(self.env, self.spec, folder, c.env, c.behaviour, c.seed, recorded)

    def data_source(
        self,
        env: gym.Env,
        spec: EnvSpec,
        folder: str | None,
        env_id: str,
        behaviour: str,
        seed: int,
        recorded: dict[str, Any] | None,
        label: str = "",
    ) -> DataSource:
        """The source of one task's data: the Minari dataset in ``folder``, or collection by
        ``behaviour`` (seeded by ``seed``; episodes by the run's seed) when ``folder`` is None."""
        c = self.config
        if folder is not None:
            what = "--dataset" if not c.task_ids else f"--dataset (task {spec.name})"
            return MinariSource(
                folder,
                env,
                spec,
                max_steps=replay_capacity(c),
                min_steps=c.seq_len,
                recorded=recorded,
                what=what,
            )
        return Collection(env, env_id, behaviour, c.data_steps, seed=seed, episode_seed=c.seed, label=label)

    def _open_data(self) -> IOSpec:
        """Open the dataset's replay; returns the model's io spec."""
        config = self.config
        self.replay = Replay(
            self.logdir / "replay", replay_capacity(config), chunk_length=1024, seed=config.seed
        )
        return IOSpec.from_spaces(self.env.observation_space, self.env.action_space)

    def sample_batch(self) -> dict[str, np.ndarray]:
        """One world-model batch ``(B, T, ...)`` from the dataset."""
        c = self.config
        return self.replay.sample(c.batch_size, c.seq_len, prioritize_ends=c.prioritize_ends)

    def data_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the data sampling (JSON)."""
        return {"replay": self.replay.state_dict()}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state["replay"])

    def _check_run_dir(self) -> None:
        """Refuse a ``logdir`` that holds another run; accept new loss weights as a next stage.

        Only ``updates``, ``checkpoint_every`` and the loss weights (``model.loss``) may differ from the
        saved settings, once the run has data or a checkpoint (before, any settings start it afresh).
        A loss change after the first checkpoint starts a new stage of the same run, kept in
        ``pretrain_config.json`` under ``loss_stages`` (and in the bundle's info), so a staged recipe
        stays reproducible: rerun each stage's command with its ``--updates``.
        """
        current = to_dict(self.config)
        stages: list[dict[str, Any]] = []
        previous = read_pretrain_settings(self.logdir)
        if read_dataset_record(self.logdir) is None and latest_checkpoint(self.logdir) is None:
            previous = None  # nothing gathered or fitted yet (e.g. a dataset refused mid-way): a fresh run
        if previous is not None:
            stages = previous.pop(LOSS_STAGES, [])
            keys = [k for k in current if k not in {"updates", "checkpoint_every", "start_context"}]
            defaults = to_dict(PretrainConfig())  # settings added since the run began read as defaults
            differ = [
                k
                for k in keys
                if _without_loss(previous.get(k, defaults.get(k)), k) != _without_loss(current[k], k)
            ]
            if differ:
                raise ValueError(
                    f"{self.logdir} holds a pretraining run with other settings ({', '.join(differ)}):"
                    " pass another --logdir or the same options"
                )
            # Weights added since the run began read as their defaults (what the run trained with).
            old_loss = to_dict(from_dict(LossConfig, previous.get("model", {}).get("loss", {})))
            new_loss = current["model"]["loss"]
            checkpoint = latest_checkpoint(self.logdir)
            if old_loss != new_loss and checkpoint is not None:
                step, _ = read_checkpoint_state(checkpoint)
                changed = {k: [old_loss.get(k), v] for k, v in new_loss.items() if old_loss.get(k) != v}
                stages.append({"from_update": step, "loss": changed})
                log.warning("%s: loss weights change at update %d (old, new): %s", self.logdir, step, changed)
        current[LOSS_STAGES] = stages
        self.loss_stages = stages
        atomic_write_json(self.logdir / CONFIG_FILE, current)

    # ------------------------------------------------------------------ 1. collect
    def collect(self) -> dict[str, Any]:
        """Fill the dataset from the data source: up to ``data_steps`` collected steps, or the whole
        ``dataset`` (an unfinished fill is redone from scratch)."""
        recorded = read_dataset_record(self.logdir)
        if recorded is not None and self.source.loaded(self.replay, recorded):
            self.data_stats = recorded
            return self.data_stats
        self.replay.truncate(0)
        start = time.perf_counter()
        desc = "load" if self.config.dataset else "collect"
        record = self.source.fill(self.replay, self.io, progress=self.progress, desc=desc)
        self.replay.flush()
        self.data_stats = {**record, "seconds": time.perf_counter() - start}
        atomic_write_json(self.logdir / DATASET_FILE, self.data_stats)
        log.info("dataset: %s", self.data_stats)
        return self.data_stats

    # ------------------------------------------------------------------ 2. fit
    def fit(self) -> dict[str, float]:
        """Train the world model for ``updates`` steps on the dataset, resuming from the last checkpoint."""
        c = self.config
        modules = {"world_model": self.model}
        optimizers = {"world_model": self.trainer.optimizer}
        path = latest_checkpoint(self.logdir)
        if path is not None:
            self.updates, state, extra = load_checkpoint(path, modules, optimizers)
            self.load_data_state(state)
            torch.set_rng_state(extra["torch_rng"].to(torch.uint8))
            log.info("resumed %s at update %d", self.logdir, self.updates)
        rewind_logs(self.logdir, "update", self.updates)  # a killed run's rows past the checkpoint
        metrics: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(
            total=c.updates,
            initial=self.updates,
            disable=not self.progress,
            unit="upd",
            desc="fit",
            mininterval=1,
        )
        pending: list[dict[str, torch.Tensor]] = []
        while self.updates < c.updates:
            batch = batch_to_torch(self.sample_batch(), self.device)
            _, step_metrics = self.trainer.train_step(batch)
            pending.append(step_metrics)
            self.updates += 1
            bar.update(1)
            if self.updates % 50 == 0 or self.updates == c.updates:
                metrics = {k: float(torch.stack([m[k] for m in pending]).mean()) for k in pending[0]}
                bar.set_postfix(
                    {
                        k: f"{metrics[k]:.3g}"
                        for k in ("model_loss", "obs_loss", "reward_loss")
                        if k in metrics
                    },
                    refresh=False,
                )
                with open(self.logdir / METRICS_FILE, "a") as handle:
                    handle.write(json.dumps({"update": self.updates, **metrics}) + "\n")
                pending = []
            if self.updates % c.checkpoint_every == 0 or self.updates == c.updates:
                state = self.data_state()
                save_checkpoint(
                    self.logdir,
                    self.updates,
                    modules,
                    optimizers,
                    state,
                    {"torch_rng": torch.get_rng_state()},
                )
        bar.close()
        self.wall_clock["fit_seconds_this_session"] = time.perf_counter() - start
        return metrics

    def start_from_bundle(self, name: str) -> None:
        """Copy the world-model weights of bundle ``name`` (a folder or registered name) into this
        run's fresh model, for fine-tuning. Refused unless every tensor matches in name and shape."""
        from wmsim.registry import resolve_model

        theirs = resolve_model(name).model.state_dict()
        ours = self.model.state_dict()
        differ = sorted(
            k
            for k in ours.keys() | theirs.keys()
            if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape
        )
        if differ:
            raise ValueError(
                f"--init_from {name}: its world model differs from this run's in {len(differ)} tensors"
                f" (e.g. {differ[0]}): give the bundle's model settings (its config.json 'model',"
                " e.g. --preset atari_cpu for Pong) and its env, or another bundle"
            )
        self.model.load_state_dict(theirs)
        log.info("started from the world model of %s", name)

    # ------------------------------------------------------------------ 3. bundle
    def write_bundle(self, directory: str | os.PathLike | None = None) -> Path:
        """The bundle: the model plus start states from the dataset's first observations, or (with
        ``start_context``) from windows ending at random points of its episodes."""
        data = self.replay.contents()
        if self.config.start_context:
            starts = self._window_start_states(data)
        else:
            firsts = np.flatnonzero(data["is_first"])[: self.config.start_states]
            starts = encode_start_states(self.model, torch.as_tensor(data["obs"][firsts]))
        info = {
            "recipe": "offline pretraining (wmsim pretrain)" + dataset_origin([self.data_stats]),
            "updates": self.updates,
            "seed": self.config.seed,
            "pretrain_config": {**to_dict(self.config), LOSS_STAGES: self.loss_stages},
            "dataset": self.data_stats,
            "hardware": f"{platform.machine()}, {os.cpu_count()} cores, {self.device}",
            "torch": torch.__version__,
        }
        target = Path(directory) if directory is not None else self.logdir / "bundle"
        return save_bundle(target, self.model, self.spec, describe_spaces(self.env), starts, info)

    def _window_start_states(self, data: dict[str, np.ndarray]) -> StartStates:
        """``start_states`` posterior states, each after ``start_context`` real steps of one episode
        ending at a point drawn uniformly (seeded by the run's seed) among those with enough history."""
        context = self.config.start_context
        firsts = np.union1d([0], np.flatnonzero(data["is_first"]))  # the oldest step starts a stretch
        episode_start = firsts[np.searchsorted(firsts, np.arange(len(data["is_first"])), side="right") - 1]
        ends = np.flatnonzero(np.arange(len(episode_start)) - episode_start >= context - 1)
        if len(ends) == 0:
            raise ValueError(f"start_context={context}: no episode in the dataset is that long; use less")
        rng = np.random.default_rng(self.config.seed)
        chosen = np.sort(rng.choice(ends, size=min(self.config.start_states, len(ends)), replace=False))
        window = chosen[:, None] + np.arange(1 - context, 1)  # (N, context) step indices
        obs = torch.as_tensor(data["obs"][window])
        action = torch.as_tensor(data["action"][window])
        return encode_window_states(self.model, obs, action)

    def run(self) -> Path:
        self.collect()
        self.fit()
        return self.write_bundle()


def dataset_origin(records: list[dict[str, Any]]) -> str:
    """`` on the Minari dataset ID (PATH)``: where a run's data came from, for the bundle's recipe
    (empty for collected data)."""
    sources = [r["source"] for r in records if isinstance(r.get("source"), dict)]
    if not sources:
        return ""
    named = ", ".join(f"{s.get('dataset_id')} ({s.get('path')})" for s in sources)
    return f" on the Minari dataset{'s' if len(sources) > 1 else ''} {named}"


def make_pretrainer(config: PretrainConfig, *, progress: bool = True) -> OfflinePretrainer:
    """The pretrainer of ``config``: single-task, or multi-task when ``config.tasks`` lists env ids."""
    if config.task_ids:
        from .multitask import MultiTaskPretrainer

        return MultiTaskPretrainer(config, progress=progress)
    return OfflinePretrainer(config, progress=progress)
