"""Offline datasets in Minari's format (Farama's standard for offline RL): a pretraining run's data out,
and a user's dataset in instead of collecting one.

A Minari dataset is a folder ``<root>/<namespace>/<name>-v<N>/data/`` (``<root>`` is what
``MINARI_DATASETS_PATH`` names) holding ``metadata.json`` (dataset id, observation and action spaces,
the Gymnasium env spec, total steps and episodes, algorithm, author) and ``main_data.hdf5``: per episode
``observations (T + 1, ...)``, ``actions (T, ...)``, ``rewards``, ``terminations`` and ``truncations
(T,)``. wmsim's replay holds the same episodes as steps (:mod:`wmsim.data`): step 0 is the reset
observation (zero action, zero reward, ``is_first``), step ``t > 0`` observation ``t`` with the action
and reward that led to it, ``is_last = terminated or truncated`` and ``is_terminal = terminated``. The
two convert exactly both ways (discrete actions are one-hot in the replay, integers in Minari), so an
exported dataset fitted again fills a replay equal to the original, step for step.

- :func:`export_run` (``wmsim export-dataset LOGDIR --out DIR``) writes a pretraining run's dataset as a
  Minari dataset ``wmsim/<task>/<behaviour>-v0`` in the Minari root ``DIR``; a multi-task run gets one
  root per task, ``DIR/<task>``.
- :class:`MinariSource` (``wmsim pretrain --dataset DIR``) is a data source of the pretrainers
  (:mod:`agents.offline`, :mod:`agents.multitask`): it checks a dataset against the run's env and plays
  its episodes into the run's replay, where the other source, :class:`agents.offline.Collection`,
  plays a behaviour policy in the real env.

Minari is imported lazily (``pip install 'wmsim[minari]'``) and used on local folders only: nothing here
downloads, lists or reads a remote.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

import wmsim
from wmsim.data import Step, first_step, next_step
from wmsim.envs import EnvSpec, make_env
from wmsim.fileio import atomic_directory
from wmsim.world_model import IOSpec

from .replay import Replay

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'wmsim[minari]'"
NAMESPACE = "wmsim"
AUTHOR = "wmsim"
METADATA_FILE = "metadata.json"
ROOT_VARIABLE = "MINARI_DATASETS_PATH"
ACTION_TOLERANCE = 1e-5  # actions this far outside the env's bounds are still its actions


class DatasetError(ValueError):
    """A dataset that cannot be read or written; the message names the problem and the fix."""


def import_minari() -> ModuleType:
    """The ``minari`` package, or a :class:`DatasetError` that says how to install it."""
    try:
        import minari
    except ImportError as exc:
        raise DatasetError(f"Minari datasets need the minari package ({exc}): {INSTALL_HINT}") from exc
    return minari


def return_summary(returns: list[float]) -> dict[str, float]:
    """Mean, min and max of episode returns, as the dataset records keep them."""
    return {
        "episode_return_mean": float(np.mean(returns)),
        "episode_return_min": float(np.min(returns)),
        "episode_return_max": float(np.max(returns)),
    }


class DataSource(Protocol):
    """Where a pretraining run's data comes from (one task): :class:`agents.offline.Collection` or
    :class:`MinariSource`. Both fill the run's replay with whole episodes."""

    def loaded(self, replay: Replay, record: Mapping[str, Any] | None) -> bool:
        """Whether ``replay`` already holds this source's data, as ``record`` (the task's entry of
        ``dataset.json``, None when there is none) says a finished fill left it."""
        ...

    def fill(self, replay: Replay, io: IOSpec, *, progress: bool, desc: str) -> dict[str, Any]:
        """Add the source's episodes to the empty ``replay``; returns the dataset record (behaviour,
        steps, episodes, returns and, for a dataset, its ``source``)."""
        ...


# ---------------------------------------------------------------------------------------------- episodes
@dataclass(frozen=True)
class Episode:
    """One episode in Minari's layout: ``observations (T + 1, ...)``, ``actions (T, ...)`` as the env
    takes them (integers for a discrete space), ``rewards (T,)`` float32, ``terminations`` and
    ``truncations (T,)`` bool."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)


def replay_episodes(data: Mapping[str, np.ndarray], io: IOSpec) -> list[Episode]:
    """The episodes of replay contents (:meth:`agents.replay.Replay.contents`), in stream order. Steps
    before the stream's first ``is_first`` (an evicted start) and episodes with no step after their
    first are left out."""
    firsts = np.flatnonzero(data["is_first"])
    ends = np.append(firsts[1:], len(data["is_first"]))
    episodes = []
    for begin, end in zip(firsts, ends, strict=True):
        if end - begin < 2:
            continue
        action = data["action"][begin + 1 : end]
        terminal = data["is_terminal"][begin + 1 : end].astype(bool)
        last = data["is_last"][begin + 1 : end].astype(bool)
        episodes.append(
            Episode(
                observations=data["obs"][begin:end],
                actions=action.argmax(-1).astype(np.int64) if io.discrete else action.astype(np.float32),
                rewards=data["reward"][begin + 1 : end].astype(np.float32),
                terminations=terminal,
                truncations=last & ~terminal,
            )
        )
    return episodes


def episode_steps(episode: Episode, io: IOSpec) -> Iterator[Step]:
    """The replay steps of one episode: its first step, then one per transition (T + 1 in all)."""
    yield first_step(episode.observations[0], io)
    for t in range(len(episode)):
        yield next_step(
            episode.observations[t + 1],
            episode.actions[t],
            float(episode.rewards[t]),
            bool(episode.terminations[t]),
            bool(episode.truncations[t]),
            io,
        )


def check_episode(raw: Any, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> Episode:
    """A Minari episode (``EpisodeData``) checked against the env's spaces, as an :class:`Episode` with
    the env's dtypes; raises ``ValueError`` naming the problem otherwise."""
    obs, actions = raw.observations, raw.actions
    if not isinstance(obs, np.ndarray) or not isinstance(actions, np.ndarray):
        raise ValueError(
            f"its observations and actions are {type(obs).__name__} and {type(actions).__name__}, expected"
            " arrays (a Box observation space and a Box or Discrete action space)"
        )
    rewards, terminations, truncations = (
        np.asarray(raw.rewards),
        np.asarray(raw.terminations),
        np.asarray(raw.truncations),
    )
    steps = len(rewards)
    if steps < 1:
        raise ValueError("it has no step (0 rewards)")
    assert observation_space.shape is not None and action_space.shape is not None
    expected = {
        "observations": (obs, (steps + 1, *observation_space.shape)),
        "actions": (actions, (steps, *action_space.shape)),
        "rewards": (rewards, (steps,)),
        "terminations": (terminations, (steps,)),
        "truncations": (truncations, (steps,)),
    }
    for name, (array, shape) in expected.items():
        if array.shape != shape:
            raise ValueError(
                f"{name} have shape {array.shape}, expected {shape} ({steps} steps: T + 1 observations,"
                " T of everything else)"
            )
    if not np.isfinite(rewards.astype(np.float64)).all():
        raise ValueError("its rewards are not all finite")
    for name, flags in (("terminations", terminations), ("truncations", truncations)):
        if flags.dtype != np.bool_ and not np.isin(flags, (0, 1)).all():
            raise ValueError(f"its {name} are not booleans")
        if flags[:-1].astype(bool).any():
            at = int(np.flatnonzero(flags[:-1].astype(bool))[0])
            raise ValueError(f"{name}[{at}] is true before the last step: an episode ends at its last step")
    assert isinstance(observation_space, gym.spaces.Box)
    obs = _in_box(obs, observation_space, "observations", 0.0)
    if isinstance(action_space, gym.spaces.Discrete):
        if actions.dtype.kind not in "iu" or not ((actions >= 0) & (actions < int(action_space.n))).all():
            raise ValueError(f"its actions are not all integers in [0, {int(action_space.n)})")
        actions = actions.astype(np.int64)
    else:
        assert isinstance(action_space, gym.spaces.Box)
        actions = _in_box(actions, action_space, "actions", ACTION_TOLERANCE)
    return Episode(
        obs, actions, rewards.astype(np.float32), terminations.astype(bool), truncations.astype(bool)
    )


def _in_box(values: np.ndarray, space: gym.spaces.Box, name: str, tolerance: float) -> np.ndarray:
    """``values`` in the dtype of ``space``, checked to be finite (floats) and inside its bounds."""
    if values.dtype.kind not in "fiub":
        raise ValueError(f"its {name} are {values.dtype}, expected numbers ({space.dtype})")
    if space.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"its {name} are not all finite")
    slack = tolerance * np.maximum(1.0, np.abs(np.where(np.isfinite(space.high), space.high, 0.0)))
    if ((values < space.low - slack) | (values > space.high + slack)).any():
        raise ValueError(f"its {name} leave the bounds of {space}")
    return np.asarray(values, space.dtype)


# ---------------------------------------------------------------------------------------------- reading
def find_dataset(path: str | os.PathLike[str], what: str = "--dataset") -> Path:
    """The data folder (the one holding ``metadata.json``) of the Minari dataset at ``path``: that
    folder itself, the dataset's folder (``<root>/<id>``, holding ``data/``), or a Minari root
    (``MINARI_DATASETS_PATH``) or namespace holding exactly one dataset."""
    folder = Path(path)
    hint = "give a Minari dataset's folder, e.g. one that `wmsim export-dataset LOGDIR --out DIR` wrote"
    if not folder.exists():
        raise DatasetError(f"{what} {path}: no such folder: {hint}")
    if not folder.is_dir():
        raise DatasetError(f"{what} {path} is a file, not a folder: {hint}")
    if (folder / METADATA_FILE).is_file():
        return folder
    if (folder / "data" / METADATA_FILE).is_file():
        return folder / "data"
    found = sorted(p.parent for p in folder.rglob(f"data/{METADATA_FILE}"))
    if not found:
        raise DatasetError(f"{what} {path} holds no Minari dataset (no data/{METADATA_FILE}): {hint}")
    if len(found) > 1:
        names = ", ".join(str(p.parent) for p in found[:5]) + (", ..." if len(found) > 5 else "")
        raise DatasetError(f"{what} {path} holds {len(found)} Minari datasets ({names}): pass one of them")
    return found[0]


def open_dataset(data_path: Path, what: str = "--dataset") -> Any:
    """``minari.MinariDataset`` of the data folder ``data_path`` (local, no download), or a
    :class:`DatasetError` naming the file that is not a readable Minari dataset."""
    minari = import_minari()
    metadata_file = data_path / METADATA_FILE
    fix = "write it again (e.g. `wmsim export-dataset`) or pass another folder"
    try:
        metadata = json.loads(metadata_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{what}: {metadata_file} is not Minari metadata ({exc}): {fix}") from exc
    missing = [
        k
        for k in ("dataset_id", "data_format", "observation_space", "action_space", "minari_version")
        if not isinstance(metadata, dict) or k not in metadata
    ]
    if missing:
        raise DatasetError(
            f"{what}: {metadata_file} is not Minari metadata (it lacks {', '.join(missing)}): {fix}"
        )
    try:
        dataset = minari.MinariDataset(data_path)
        if dataset.total_episodes:  # opens the data file: a damaged one fails here, not mid-way
            next(iter(dataset.storage.get_episode_metadata([int(dataset.episode_indices[0])])))
    except Exception as exc:  # foreign or damaged files raise anything: KeyError, OSError, ImportError, ...
        raise DatasetError(
            f"{what}: {data_path} is not a readable Minari dataset ({type(exc).__name__}: {exc}): {fix}"
        ) from exc
    return dataset


def describe_dataset(dataset: Any, path: str) -> dict[str, Any]:
    """The ``source`` record of a Minari dataset: where it is and what its metadata says."""
    metadata = dataset.storage.metadata
    author = metadata.get("author")
    env_spec = dataset.env_spec
    return {
        "format": "minari",
        "path": str(path),
        "data_path": str(dataset.storage.data_path),
        "dataset_id": dataset.id,
        "algorithm_name": metadata.get("algorithm_name"),
        "author": sorted(author) if isinstance(author, set | list | tuple) else author,
        "env_spec": env_spec.id if env_spec is not None else None,
        "total_steps": int(metadata["total_steps"]),
        "total_episodes": int(metadata["total_episodes"]),
        "minari_version": dataset.minari_version,
    }


def _fingerprint(source: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(source.get(k) for k in ("dataset_id", "total_steps", "total_episodes"))


class MinariSource:
    """The episodes of a Minari dataset as the data of one task of a pretraining run.

    Opening it checks the dataset against the run's env (the spaces must match) and against the
    replay's capacity (``max_steps`` replay steps: a dataset's T steps per episode plus its first
    observation); filling plays its episodes into the replay as collection would have recorded them.
    On a resume the replay already holds the data: the dataset is then only compared with the one the
    run loaded (a changed dataset is refused), and may even be gone.
    """

    def __init__(
        self,
        path: str,
        env: gym.Env[Any, Any],
        spec: EnvSpec,
        *,
        max_steps: int,
        min_steps: int,
        recorded: Mapping[str, Any] | None = None,
        what: str = "--dataset",
    ) -> None:
        self.path, self.spec, self.what = path, spec, what
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.dataset: Any = None
        previous = dict(recorded.get("source") or {}) if recorded else {}
        if previous and not Path(path).exists():
            log.warning(
                "%s %s is gone; the run's replay holds the data it loaded (%s)",
                what,
                path,
                previous.get("dataset_id"),
            )
            self.source = previous
            return
        self.dataset = open_dataset(find_dataset(path, what), what)
        self.source = describe_dataset(self.dataset, path)
        self._check_spaces()
        self._check_wmsim_env()
        steps = self.source["total_steps"] + self.source["total_episodes"]
        dataset = f"{what} {path} ({self.source['dataset_id']})"
        if steps > max_steps:
            raise DatasetError(
                f"{dataset} holds {self.source['total_episodes']} episodes of {self.source['total_steps']}"
                f" steps, {steps} replay steps with each episode's first observation: more than the run's"
                f" replay holds ({max_steps}); pass --data_steps {steps}"
            )
        if steps < min_steps:
            raise DatasetError(
                f"{dataset} holds {steps} replay steps, fewer than --seq_len {min_steps}: a batch row"
                " needs that many; give a larger dataset or a smaller --seq_len"
            )

    @property
    def behaviour(self) -> str:
        """The dataset's ``algorithm_name`` (what played its episodes), or ``unknown``."""
        return str(self.source.get("algorithm_name") or "unknown")

    def _check_spaces(self) -> None:
        ours = (self.observation_space, self.action_space)
        theirs = (self.dataset.observation_space, self.dataset.action_space)
        if theirs[0] != ours[0] or theirs[1] != ours[1]:
            shapes = [len(s.shape or ()) for s in (theirs[0], ours[0])]
            obs = "; --env_obs state or pixels picks the env's observations" if shapes[0] != shapes[1] else ""
            raise DatasetError(
                f"{self.what} {self.path} ({self.source['dataset_id']}) has observations {theirs[0]} and"
                f" actions {theirs[1]}, but the env {self.spec.id} ({self.spec.obs_type} observations) has"
                f" observations {ours[0]} and actions {ours[1]}: pass the env the dataset was recorded in"
                f" (its env spec: {self.source['env_spec']}{obs}), or another dataset"
            )

    def _check_wmsim_env(self) -> None:
        """Warn when a dataset that wmsim wrote says it was recorded in another protocol of the env
        (action repeat, time limit, ...): the spaces match, the dynamics may not."""
        recorded = (self.dataset.storage.metadata.get(NAMESPACE) or {}).get("env")
        if not isinstance(recorded, dict):
            return
        ours = self.spec.to_dict()
        differ = sorted(k for k in ours if recorded.get(k) != ours[k])
        if differ:
            log.warning(
                "%s %s was recorded in %s with other settings than this run's env (%s): %s",
                self.what,
                self.path,
                recorded.get("suite", "?") + "/" + str(recorded.get("name", "?")),
                ", ".join(differ),
                {k: [recorded.get(k), ours[k]] for k in differ},
            )

    def loaded(self, replay: Replay, record: Mapping[str, Any] | None) -> bool:
        previous = (record or {}).get("source")
        if not previous:
            return False
        if self.dataset is not None and _fingerprint(previous) != _fingerprint(self.source):
            raise DatasetError(
                f"{self.what} {self.path} is not the dataset this run loaded ({previous.get('dataset_id')},"
                f" {previous.get('total_steps')} steps in {previous.get('total_episodes')} episodes; now"
                f" {self.source['dataset_id']}, {self.source['total_steps']} steps in"
                f" {self.source['total_episodes']} episodes): put that dataset back or pass another --logdir"
            )
        assert record is not None
        return replay.total_steps >= int(record["steps"])

    def fill(self, replay: Replay, io: IOSpec, *, progress: bool, desc: str) -> dict[str, Any]:
        if self.dataset is None:
            raise DatasetError(
                f"{self.what} {self.path}: no such folder, and the run's replay lost the data it had"
                " loaded from it: put the dataset back or pass another --logdir"
            )
        returns: list[float] = []
        unfinished = 0
        start = replay.total_steps
        bar = tqdm(
            total=self.source["total_steps"], disable=not progress, unit="step", desc=desc, mininterval=1
        )
        index = -1
        episodes = self.dataset.iterate_episodes()
        while True:
            index += 1
            try:
                raw = next(episodes)
            except StopIteration:
                break
            except Exception as exc:  # a damaged HDF5 file fails here, at the first read of the episode
                raise DatasetError(
                    f"{self.what} {self.path}: episode {index} cannot be read ({type(exc).__name__}: {exc}):"
                    " the dataset's data file is damaged; write it again or pass another dataset"
                ) from exc
            try:
                episode = check_episode(raw, self.observation_space, self.action_space)
            except ValueError as exc:
                raise DatasetError(
                    f"{self.what} {self.path}: episode {index} is malformed: {exc}. Leave it out (e.g."
                    " minari's filter_episodes into a new dataset) or write the dataset again"
                ) from exc
            for step in episode_steps(episode, io):
                replay.add(step)
            returns.append(float(episode.rewards.astype(np.float64).sum()))
            unfinished += not (episode.terminations[-1] or episode.truncations[-1])
            bar.update(len(episode))
        bar.close()
        record: dict[str, Any] = {
            "behaviour": self.behaviour,
            "steps": replay.total_steps - start,
            "episodes": len(returns),
            **return_summary(returns),
            "source": self.source,
        }
        if unfinished:
            record["unfinished_episodes"] = unfinished  # neither terminated nor truncated at the end
        log.info("loaded %s from %s: %d episodes", self.source["dataset_id"], self.path, len(returns))
        return record


def dataset_folders(dataset: str, task_names: list[str]) -> list[str]:
    """One dataset folder per task from ``--dataset``: as many comma-separated folders as tasks, in
    the order of ``--tasks``, or one folder holding a dataset per task in subfolders named by the tasks
    (``DIR/<task>``, what ``wmsim export-dataset`` writes for a multi-task run)."""
    parts = [p.strip() for p in dataset.split(",")]
    if len(parts) == len(task_names) and (len(parts) > 1 or not (Path(parts[0]) / task_names[0]).is_dir()):
        return parts
    if len(parts) == 1:
        return [str(Path(parts[0]) / name) for name in task_names]
    raise DatasetError(
        f"--dataset {dataset}: {len(parts)} folders for {len(task_names)} tasks: give one per task in the"
        " order of --tasks, or one folder holding a dataset per task (DIR/<task>)"
    )


# ---------------------------------------------------------------------------------------------- writing
def gym_env_spec(spec: EnvSpec) -> gym.envs.registration.EnvSpec:
    """The Gymnasium env spec that rebuilds ``spec``'s env with ``gymnasium.make`` (Minari's
    ``recover_environment``): the registered Gymnasium id when wmsim's env is that env as registered
    (a ``gym`` id with wmsim's defaults and state observations), else :func:`wmsim.envs.make_env` with
    every field of ``spec`` (DeepMind Control, Atari, other settings; it needs wmsim installed)."""
    if spec.suite == "gym" and spec.obs_type == "state" and spec == EnvSpec.from_id(spec.name):
        return gym.spec(spec.name)
    kwargs = {"spec": spec.id, **{k: v for k, v in spec.to_dict().items() if k not in ("suite", "name")}}
    return gym.envs.registration.EnvSpec(
        id=f"{NAMESPACE}/{spec.suite}-{spec.name}", entry_point="wmsim.envs:make_env", kwargs=kwargs
    )


def dataset_id(task: str, behaviour: str, version: int = 0) -> str:
    """``wmsim/<task>/<behaviour>-v<version>``: the behaviour's first word, as Minari ids allow."""
    name = re.sub(r"[^\w-]+", "_", behaviour.split(" (")[0].split(" + ")[0].strip()).strip("_-") or "data"
    return f"{NAMESPACE}/{task}/{name}-v{version}"


@contextlib.contextmanager
def _minari_root(root: Path) -> Iterator[None]:
    """``MINARI_DATASETS_PATH`` set to ``root`` for the block (Minari writes under it)."""
    old = os.environ.get(ROOT_VARIABLE)
    os.environ[ROOT_VARIABLE] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ROOT_VARIABLE, None)
        else:
            os.environ[ROOT_VARIABLE] = old


def write_dataset(
    root: str | os.PathLike[str],
    dataset_id: str,
    episodes: list[Episode],
    spec: EnvSpec,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    *,
    algorithm_name: str,
    description: str,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``episodes`` as the Minari dataset ``dataset_id`` in the Minari root ``root`` (made anew,
    atomically: a kill leaves the old folder or none), with Minari's own writer. Observations are
    stored losslessly (no JPEG). ``extra`` goes into ``metadata.json`` beside Minari's keys. Returns the
    dataset's data folder."""
    minari = import_minari()
    from minari.data_collector import EpisodeBuffer

    if not episodes:
        raise DatasetError(f"{dataset_id}: no complete episode to write")
    buffers = [
        EpisodeBuffer(
            observations=e.observations,
            actions=e.actions,
            rewards=e.rewards,
            terminations=e.terminations,
            truncations=e.truncations,
        )
        for e in episodes
    ]

    def write(staging: Path) -> None:
        with _minari_root(staging), warnings.catch_warnings():
            # Minari warns about the fields left empty (code permalink, e-mail, evaluation env)
            warnings.simplefilter("ignore", UserWarning)
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=gym_env_spec(spec),
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name=algorithm_name,
                author=AUTHOR,
                description=description,
                requirements=[f"wmsim>={wmsim.__version__}"],
                data_format="hdf5",
                jpeg_encoding=False,
            )
            if extra:
                dataset.storage.update_metadata(dict(extra))

    target = atomic_directory(root, write)
    return target / dataset_id / "data"


@dataclass(frozen=True)
class Exported:
    """One dataset that :func:`export_run` wrote."""

    task: str
    dataset_id: str
    root: Path
    episodes: int
    steps: int


def export_run(logdir: str | os.PathLike[str], out: str | os.PathLike[str]) -> list[Exported]:
    """Write the dataset of the pretraining run in ``logdir`` as Minari datasets: ``out`` is the Minari
    root of a single-task run's dataset, ``out/<task>`` that of each task of a multi-task run. Each holds
    ``wmsim/<task>/<behaviour>-v0`` with every episode of the run's replay (policy data that
    ``wmsim add-data`` appended included). Refuses an ``out`` that already holds files. Run it on a run
    that is not collecting at the same time."""
    from wmsim.config import from_dict

    from .multitask import task_name, task_spec
    from .offline import (
        DATASET_FILE,
        LOSS_STAGES,
        PretrainConfig,
        env_spec_of_config,
        read_pretrain_settings,
        replay_capacity,
    )

    logdir, out = Path(logdir), Path(out)
    if not logdir.is_dir():
        raise DatasetError(f"{logdir}: no such folder: give the --logdir of a `wmsim pretrain` run")
    settings = read_pretrain_settings(logdir)
    stats_file = logdir / DATASET_FILE
    if settings is None or not stats_file.is_file():
        raise DatasetError(
            f"{logdir} holds no pretraining run with a dataset ({DATASET_FILE}): give the --logdir of a"
            " `wmsim pretrain` run that has collected its data"
        )
    settings.pop(LOSS_STAGES, None)
    config = from_dict(PretrainConfig, settings)
    try:
        stats = json.loads(stats_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{stats_file} is not a dataset record ({exc}): rerun the run's command") from exc
    import_minari()
    if config.task_ids:
        specs = [task_spec(env_id, config.env_obs) for env_id in config.task_ids]
        tasks = stats.get("tasks") if isinstance(stats, dict) else None
        if not isinstance(tasks, dict) or any(task_name(s) not in tasks for s in specs):
            raise DatasetError(f"{stats_file} records no dataset of some task: rerun the run's command")
        jobs = [
            (spec, logdir / "replay" / task_name(spec), tasks[task_name(spec)], out / task_name(spec))
            for spec in specs
        ]
    else:
        spec = env_spec_of_config(config)
        jobs = [(spec, logdir / "replay", stats, out)]
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file: pass a folder")
    for _, _, _, target in jobs:
        if target.is_dir() and any(target.iterdir()):
            raise DatasetError(f"--out {target} already holds files: delete it or pass another --out")
    written = []
    for spec, replay_dir, record, target in jobs:
        if not replay_dir.is_dir():
            raise DatasetError(f"{replay_dir}: no such folder: the run's data is gone; rerun its command")
        replay = Replay(replay_dir, replay_capacity(config), chunk_length=1024, seed=config.seed)
        if replay.total_steps < int(record["steps"]):
            raise DatasetError(
                f"{replay_dir} holds {replay.total_steps} steps, fewer than the {record['steps']} that"
                f" {stats_file} records: rerun the run's `wmsim pretrain` command to gather them again"
            )
        env = make_env(spec)
        try:
            io = IOSpec.from_spaces(env.observation_space, env.action_space)
            episodes = replay_episodes(replay.contents(), io)
            name = task_name(spec)
            behaviour = str(record.get("behaviour", config.behaviour))
            additions = record.get("additions", [])
            algorithm = behaviour
            if additions:
                added = sum(int(a.get("steps", 0)) for a in additions)
                algorithm += f" + {added} steps of dream-trained policies (wmsim add-data)"
            identifier = dataset_id(name, behaviour)
            steps = sum(len(e) for e in episodes)
            origin = record.get("source")
            description = (
                f"{spec.id} ({spec.obs_type} observations, action repeat {spec.action_repeat}, time limit"
                f" {spec.time_limit}): {len(episodes)} episodes, {steps} steps played by {algorithm};"
                f" the offline dataset of the wmsim pretraining run {logdir}"
                + (f", which loaded it from the Minari dataset {origin.get('dataset_id')}" if origin else "")
                + ". Exported by `wmsim export-dataset`."
            )
            extra = {
                NAMESPACE: {
                    "env": spec.to_dict(),
                    "version": wmsim.__version__,
                    "run": str(logdir),
                    "behaviour": behaviour,
                    "record": {k: v for k, v in record.items() if k != "additions"},
                    "additions": additions,
                }
            }
            write_dataset(
                target,
                identifier,
                episodes,
                spec,
                env.observation_space,
                env.action_space,
                algorithm_name=algorithm,
                description=description,
                extra=extra,
            )
        finally:
            env.close()
        written.append(Exported(name, identifier, target, len(episodes), steps))
        log.info("wrote %s (%d episodes, %d steps) to %s", identifier, len(episodes), steps, target)
    return written
