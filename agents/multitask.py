"""Offline pretraining of one world model over several tasks (the PWM setting).

``wmsim pretrain --tasks dmc/cartpole-swingup,dmc/reacher-easy,... --logdir runs/mt`` does for every
task what single-task pretraining (:mod:`agents.offline`) does for one env, then fits one model on all:

1. **Collect** ``data_steps`` real steps *per task* with the behaviour policy into one replay per task
   (``LOGDIR/replay/<task>/``); a task with no scripted player is played at random under ``scripted``
   and ``mixed`` (the dataset record says so). With ``dataset`` each task's replay is filled from a
   Minari dataset instead (:class:`agents.datasets.MinariSource`).
2. **Fit** a task-conditioned world model (:class:`wmsim.world_model.TaskSet`): every batch draws its
   ``batch_size`` rows' tasks uniformly, samples each row from that task's replay, zero-pads
   observations and actions to the largest task's and adds the ``task`` indices ``(B, T)``. Checkpoints
   keep the replays' and the task draw's random states, so a rerun of the same command resumes.
3. **Bundle** the model with every task's env, spaces and start states (``start_states`` per task).

Tasks take vector observations and continuous actions (DeepMind Control from states, Pendulum-v1, ...).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmsim.bundle import BundleTask, encode_start_states, save_bundle
from wmsim.config import to_dict
from wmsim.envs import EnvSpec, describe_spaces, make_env
from wmsim.fileio import atomic_write_json
from wmsim.world_model import IOSpec, TaskIO

from .behaviours import SCRIPTED
from .datasets import dataset_folders
from .offline import (
    DATASET_FILE,
    LOSS_STAGES,
    OfflinePretrainer,
    dataset_origin,
    read_dataset_record,
    replay_capacity,
)
from .replay import Replay

log = logging.getLogger(__name__)


def task_spec(env_id: str, env_obs: str = "") -> EnvSpec:
    """The env spec of one task: state observations unless ``env_obs`` says otherwise (dmc ids
    default to pixels, which a multi-task model does not take)."""
    return EnvSpec.from_id(env_id, obs_type=env_obs or "state")


def task_name(spec: EnvSpec) -> str:
    """A task's name in the bundle: the env's name without its suite (``walker-walk``, ``Pendulum-v1``)."""
    return spec.name


def pad_last(array: np.ndarray, size: int) -> np.ndarray:
    """``array (..., X)`` zero-padded to ``(..., size)``."""
    missing = size - array.shape[-1]
    if missing <= 0:
        return array
    return np.concatenate([array, np.zeros((*array.shape[:-1], missing), array.dtype)], -1)


class MultiTaskPretrainer(OfflinePretrainer):
    """Collect, fit and bundle over several tasks; every phase resumes from what ``logdir`` holds."""

    def _open_envs(self) -> None:
        c = self.config
        self.specs = [task_spec(env_id, c.env_obs) for env_id in c.task_ids]
        self.envs = [make_env(spec, seed=c.seed) for spec in self.specs]
        tasks = []
        for spec, env in zip(self.specs, self.envs, strict=True):
            io = IOSpec.from_spaces(env.observation_space, env.action_space)
            if io.image or io.discrete or len(io.obs_shape) != 1:
                raise ValueError(
                    f"task {spec.id}: a multi-task model takes vector observations and continuous actions;"
                    f" {spec.id} has {env.observation_space} and {env.action_space}"
                )
            tasks.append(TaskIO(task_name(spec), io.obs_shape[0], io.action_size))
        self.tasks = tasks
        self.task_ios = [IOSpec((t.obs_size,), False, t.action_size, False) for t in tasks]
        names = [t.name for t in tasks]
        folders: list[str | None] = [None] * len(names)
        if c.dataset:
            folders = list(dataset_folders(c.dataset, names))
        recorded = (read_dataset_record(Path(c.logdir)) or {}).get("tasks", {})
        self.sources = []
        for index, (spec, env, folder) in enumerate(zip(self.specs, self.envs, folders, strict=True)):
            behaviour = c.behaviour if spec.id in SCRIPTED else "random"
            label = behaviour if behaviour == c.behaviour else f"random (no scripted player for {spec.id})"
            self.sources.append(
                self.data_source(
                    env,
                    spec,
                    folder,
                    spec.id,
                    behaviour,
                    c.seed + index,
                    recorded.get(task_name(spec)),
                    label,
                )
            )
        # the first task stands for the run where single-task code asks (the card's env, logs)
        self.spec, self.env, self.source = self.specs[0], self.envs[0], self.sources[0]

    def _open_data(self) -> IOSpec:
        c = self.config
        self.replays = [
            Replay(self.logdir / "replay" / t.name, replay_capacity(c), chunk_length=1024, seed=c.seed + i)
            for i, t in enumerate(self.tasks)
        ]
        self.task_rng = np.random.default_rng(c.seed)
        self.replay = self.replays[0]
        return IOSpec.multi_task(self.tasks, c.task_embed)

    # ------------------------------------------------------------------ 1. collect
    def collect(self) -> dict[str, Any]:
        """Fill every task's dataset from its source: up to ``data_steps`` collected steps, or the whole
        of its dataset (an unfinished fill redoes every task from scratch)."""
        c = self.config
        stats_file = self.logdir / DATASET_FILE
        recorded = read_dataset_record(self.logdir)
        per = (recorded or {}).get("tasks", {})
        parts = zip(self.specs, self.replays, self.sources, strict=True)
        if recorded is not None and all(s.loaded(r, per.get(task_name(spec))) for spec, r, s in parts):
            self.data_stats = recorded
            return self.data_stats
        per_task: dict[str, Any] = {}
        start = time.perf_counter()
        tasks = zip(self.specs, self.replays, self.task_ios, self.sources, strict=True)
        for spec, replay, io, source in tasks:
            replay.truncate(0)
            record = source.fill(replay, io, progress=self.progress, desc=spec.name)
            replay.flush()
            per_task[task_name(spec)] = {"env": spec.id, **record}
        behaviours = dict.fromkeys(t["behaviour"] for t in per_task.values())
        self.data_stats = {
            "behaviour": ", ".join(behaviours) if c.dataset else c.behaviour,
            "steps": sum(t["steps"] for t in per_task.values()),
            "episodes": sum(t["episodes"] for t in per_task.values()),
            "episode_return_mean": float(np.mean([t["episode_return_mean"] for t in per_task.values()])),
            "tasks": per_task,
            "seconds": time.perf_counter() - start,
        }
        atomic_write_json(stats_file, self.data_stats)
        log.info("dataset: %s", self.data_stats)
        return self.data_stats

    # ------------------------------------------------------------------ 2. fit
    def sample_batch(self) -> dict[str, np.ndarray]:
        """``batch_size`` rows, each of a task drawn uniformly: observations and actions padded to the
        largest task's, with ``task (B, T)`` int64."""
        c, io = self.config, self.io
        counts = np.bincount(
            self.task_rng.integers(len(self.replays), size=c.batch_size), minlength=len(self.replays)
        )
        parts = []
        for index, (replay, count) in enumerate(zip(self.replays, counts, strict=True)):
            if not count:
                continue
            part = replay.sample(int(count), c.seq_len, prioritize_ends=c.prioritize_ends)
            part["obs"] = pad_last(part["obs"].astype(np.float32), io.obs_shape[0])
            part["action"] = pad_last(part["action"].astype(np.float32), io.action_size)
            part["task"] = np.full(part["reward"].shape, index, np.int64)
            parts.append(part)
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def data_state(self) -> dict[str, Any]:
        return {
            "replays": [r.state_dict() for r in self.replays],
            "task_rng": self.task_rng.bit_generator.state,
        }

    def load_data_state(self, state: dict[str, Any]) -> None:
        for replay, saved in zip(self.replays, state["replays"], strict=True):
            replay.load_state_dict(saved)
        self.task_rng.bit_generator.state = state["task_rng"]

    # ------------------------------------------------------------------ 3. bundle
    def write_bundle(self, directory: str | os.PathLike | None = None) -> Path:
        """The multi-task bundle: the model, every task's env and spaces, and ``start_states`` start
        states per task from its dataset's first observations."""
        obs, task = [], []
        for index, replay in enumerate(self.replays):
            data = replay.contents()
            firsts = np.flatnonzero(data["is_first"])[: self.config.start_states]
            obs.append(pad_last(data["obs"][firsts].astype(np.float32), self.io.obs_shape[0]))
            task.append(np.full(len(firsts), index, np.int64))
        starts = encode_start_states(
            self.model, torch.as_tensor(np.concatenate(obs)), torch.as_tensor(np.concatenate(task))
        )
        tasks = [
            BundleTask(name, spec, describe_spaces(env))
            for name, spec, env in zip(self.model.tasks, self.specs, self.envs, strict=True)
        ]
        info = {
            "recipe": "offline multi-task pretraining (wmsim pretrain --tasks)"
            + dataset_origin(list(self.data_stats.get("tasks", {}).values())),
            "updates": self.updates,
            "seed": self.config.seed,
            "pretrain_config": {**to_dict(self.config), LOSS_STAGES: self.loss_stages},
            "dataset": self.data_stats,
            "hardware": f"{platform.machine()}, {os.cpu_count()} cores, {self.device}",
            "torch": torch.__version__,
        }
        target = Path(directory) if directory is not None else self.logdir / "bundle"
        first = tasks[0]
        return save_bundle(target, self.model, first.env_spec, first.spaces, starts, info, tasks=tasks)
