"""Model bundles: a directory that holds a trained world model and everything needed to use it.

Layout (format version 1)::

    config.json               format, versions, env description and spaces, io spec, model config
    model.safetensors         world-model weights
    start_states.safetensors  posterior states of real episode starts: obs (N, *obs_shape),
                              deter (N, D) float32, stoch (N, S) int64 class indices
    policy.safetensors        optional: an agent's weights that play the dream (config in config.json)

A multi-task bundle (one world model over several tasks, :class:`wmsim.world_model.TaskSet`) also
records ``tasks`` in ``config.json``: per task its name, env description and spaces, in the order of the
model's task indices. Its start states hold the padded observations and a ``task (N,)`` int64 tensor
naming each state's task. ``env`` and ``spaces`` at the top are the first task's.
:meth:`Bundle.for_task` gives the bundle of one task, which the dreams take (``task=``).

Loading is safetensors + JSON only (nothing is unpickled) and strict: the format version, the config
schema and every tensor's name, shape and dtype are checked, and any mismatch names the file and what
is wrong.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .bundle_format import (
    CARD_FILE,
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    POLICY_FILE,
    START_STATES_FILE,
    STORAGE_DTYPE_NAMES,
    WEIGHTS_FILE,
    BundleError,
    file_sha256,
    nonfinite_error,
    read_bundle_config,
    task_index,
)
from .config import WorldModelConfig, from_dict, to_dict
from .envs import EnvSpec
from .fileio import atomic_directory
from .rssm import State
from .sharing import BundleHubMixin
from .world_model import IOSpec, WorldModel

STORAGE_DTYPES = {name: getattr(torch, name) for name in STORAGE_DTYPE_NAMES}


@dataclass
class StartStates:
    """A bank of posterior states at real episode starts: ``obs (N, *obs_shape)``, ``deter (N, D)``,
    ``stoch (N, S)`` class indices; for a multi-task model also ``task (N,)`` int64 task indices."""

    obs: torch.Tensor
    deter: torch.Tensor
    stoch: torch.Tensor
    task: torch.Tensor | None = None

    def select(self, rows: torch.Tensor, obs_size: int | None = None) -> StartStates:
        """The states at ``rows`` (a bool mask or indices), observations cut to ``obs_size`` dims, no
        task tensor (the bank of one task)."""
        obs = self.obs[rows]
        return StartStates(
            obs[..., :obs_size] if obs_size is not None else obs, self.deter[rows], self.stoch[rows]
        )

    def __len__(self) -> int:
        return int(self.deter.shape[0])

    def state(self, index: torch.Tensor, classes: int) -> State:
        """The model states at ``index (B,)`` as a :class:`State` (one-hot stoch, logits of the one-hot)."""
        stoch = torch.nn.functional.one_hot(self.stoch[index].long(), classes).float()
        return State(self.deter[index].float(), stoch, torch.log(stoch.clamp_min(1e-8)))

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            "obs": self.obs.contiguous(),
            "deter": self.deter.float().contiguous(),
            "stoch": self.stoch.long().contiguous(),
        }
        if self.task is not None:
            out["task"] = self.task.long().contiguous()
        return out


@dataclass(frozen=True)
class BundleTask:
    """One task of a multi-task bundle: its name, the real env it stands for and that env's spaces
    (JSON, as :func:`wmsim.envs.describe_spaces` writes them)."""

    name: str
    env_spec: EnvSpec
    spaces: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "env": self.env_spec.to_dict(), "spaces": self.spaces}

    @classmethod
    def from_dict(cls, data: Any) -> BundleTask:
        if not isinstance(data, dict) or set(data) != {"name", "env", "spaces"}:
            raise ValueError(f"task entry {str(data)[:80]!r}: expected the keys name, env and spaces")
        if not isinstance(data["spaces"], dict) or set(data["spaces"]) != {"observation", "action"}:
            raise ValueError(f"task {data['name']!r}: spaces must hold 'observation' and 'action'")
        return cls(str(data["name"]), EnvSpec.from_dict(data["env"]), data["spaces"])


@dataclass
class Bundle(BundleHubMixin):
    """A loaded bundle: the model (on CPU, eval mode), its env description and start states.
    ``Bundle.from_pretrained(name_or_repo_or_dir)``, ``save_pretrained(dir)`` and ``push_to_hub(repo_id)``
    load and share it the Hugging Face way (:mod:`wmsim.sharing`)."""

    model: WorldModel
    env_spec: EnvSpec
    spaces: dict[str, Any]
    start_states: StartStates
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    policy_tensors: dict[str, torch.Tensor] | None = None
    policy_config: dict[str, Any] | None = None
    #: The tasks of a multi-task bundle (empty for a single-task one).
    tasks: list[BundleTask] = field(default_factory=list)
    #: The task this bundle is bound to (:meth:`for_task`), or None.
    task: str | None = None

    @property
    def has_policy(self) -> bool:
        return self.policy_tensors is not None

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def for_task(self, task: str) -> Bundle:
        """The bundle of one task of a multi-task bundle: its model bound to the task (shared weights,
        real sizes), the task's env, spaces and start states, and the bundle's policy (if any).
        ``task``: a task name (``walker-walk``) or its env id (``dmc/walker-walk``); an unknown one
        raises a ValueError listing the tasks."""
        where = f"bundle {self.path}" if self.path is not None else "this bundle"
        if not self.tasks:
            raise ValueError(f"task={task!r}: {where} is single-task ({self.env_spec.id}); leave task out")
        if self.task is not None:
            raise ValueError(f"{where} is already bound to task {self.task!r}")
        index = task_index(task, self.task_names, [t.env_spec.id for t in self.tasks], where)
        assert index is not None  # a multi-task bundle: task_index refuses task=None
        entry = self.tasks[index]
        model = self.model.for_task(index)
        if self.start_states.task is None:
            raise ValueError(f"{where}: its start states hold no task indices (StartStates.task)")
        starts = self.start_states.select(self.start_states.task == index, model.io.obs_shape[0])
        return Bundle(
            model,
            entry.env_spec,
            entry.spaces,
            starts,
            self.info,
            self.path,
            self.policy_tensors,
            self.policy_config,
            task=entry.name,
        )

    @property
    def config(self) -> WorldModelConfig:
        return self.model.config


@torch.no_grad()
def encode_start_states(
    model: WorldModel, obs: torch.Tensor, task: torch.Tensor | None = None
) -> StartStates:
    """Posterior states of first observations ``obs (N, *obs_shape)`` from the all-zero state; for a
    multi-task model ``obs`` are padded and ``task (N,)`` holds their task indices.

    The categorical latents are sampled (seeded, reproducible), as the model saw them in training."""
    action = torch.zeros(obs.shape[0], 1, model.io.action_size)
    starts = encode_window_states(model, obs[:, None], action, task[:, None] if task is not None else None)
    starts.task = task.long().cpu() if task is not None else None
    return starts


@torch.no_grad()
def encode_window_states(
    model: WorldModel, obs: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None
) -> StartStates:
    """Posterior states at the last step of real windows ``obs (N, T, *obs_shape)`` with the actions
    stored beside them ``(N, T, A)`` (and ``task (N, T)`` for a multi-task model): the model observes
    each window from the all-zero state, so ``T > 1`` gives start states in the middle of episodes.
    The categorical latents are sampled (seeded, reproducible), as the model saw them in training."""
    device = next(model.parameters()).device
    n, steps = obs.shape[:2]
    is_first = torch.zeros(n, steps, dtype=torch.bool, device=device)
    is_first[:, 0] = True
    batch = {"obs": obs.to(device), "action": action.to(device).float(), "is_first": is_first}
    if task is not None:
        batch["task"] = task.to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        posts, _ = model.observe(batch)
    return StartStates(obs[:, -1].cpu(), posts.deter[:, -1].cpu(), posts.stoch[:, -1].argmax(-1).cpu())


def save_bundle(
    directory: str | os.PathLike,
    model: WorldModel,
    env_spec: EnvSpec,
    spaces: dict[str, Any],
    start_states: StartStates,
    info: dict[str, Any] | None = None,
    policy: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
    *,
    weights_dtype: str = "float32",
    card: bool = True,
    tasks: list[BundleTask] | None = None,
) -> Path:
    """Write a bundle into ``directory`` (created if needed). The new bundle is built in a temporary
    folder beside it and swapped in whole (:func:`wmsim.fileio.atomic_directory`), so a crash at any
    moment leaves the previous bundle complete and loadable, or the new one; other files in the folder
    (``openloop.json``, ``transfer.json``, ``onnx/``, figures) are kept.

    Args:
        policy: optional ``(tensors, config)`` of an agent that plays the dream; the config (JSON)
            names its kind.
        weights_dtype: storage of the world model's floating-point weights: ``float32`` (exact),
            ``float16`` or ``bfloat16`` (half the size; loading casts back to float32).
        card: write (or refresh) the ``README.md`` model card from the bundle's contents.
        tasks: the tasks of a multi-task model, in the order of its task indices (their names must be
            the model's); ``start_states.task`` then says which task each start state is of.
    """
    if model.task is not None:
        raise ValueError("this world model is bound to one task (for_task): save the multi-task model")
    check_tasks(model, tasks or [], start_states.task)
    if weights_dtype not in STORAGE_DTYPES:
        raise ValueError(f"weights_dtype={weights_dtype!r}: choose one of {sorted(STORAGE_DTYPES)}")
    storage = STORAGE_DTYPES[weights_dtype]
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "wmsim_version": __version__,
        "env": env_spec.to_dict(),
        "spaces": spaces,
        "io": model.full_io.to_dict(),
        "model": to_dict(model.config),
        "num_start_states": len(start_states),
        "weights_dtype": weights_dtype,
        "info": info or {},
    }
    if tasks:
        config["tasks"] = [t.to_dict() for t in tasks]
    weights = {name: _stored(t, storage) for name, t in model.state_dict().items()}
    tensors = {WEIGHTS_FILE: weights, START_STATES_FILE: start_states.tensors()}
    if policy is not None:
        config["policy"] = policy[1]
        tensors[POLICY_FILE] = {k: v.detach().cpu().contiguous() for k, v in policy[0].items()}
    written = {CONFIG_FILE, WEIGHTS_FILE, START_STATES_FILE, POLICY_FILE} | ({CARD_FILE} if card else set())

    def write(folder: Path) -> None:
        for name, values in tensors.items():
            write_safetensors(values, folder / name, metadata={"format": FORMAT})
        config["checksums"] = {name: file_sha256(folder / name) for name in tensors}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        if card:
            from .card import write_card

            write_card(folder, location=directory)

    atomic_directory(directory, write, carry_over=lambda name: name not in written)
    return Path(directory)


def check_tasks(model: WorldModel, tasks: list[BundleTask], start_task: torch.Tensor | None) -> None:
    """Raise a ValueError unless ``tasks`` (and the start states' task indices) fit the model's tasks:
    the same names in the same order, spaces of the task's sizes, at least one start state per task."""
    names = model.tasks
    if [t.name for t in tasks] != names:
        if not names:
            raise ValueError(
                f"the world model is single-task but {len(tasks)} task(s) were given"
                f" ({', '.join(t.name for t in tasks)}): a task list needs a model built with io tasks"
            )
        raise ValueError(
            f"the task list ({', '.join(t.name for t in tasks) or 'none'}) does not match the world model's"
            f" tasks ({', '.join(names)}) in names and order"
        )
    if not names:
        if start_task is not None:
            raise ValueError("start states of a single-task model hold no task indices")
        return
    assert model.full_io.tasks is not None
    for entry, spec in zip(tasks, model.full_io.tasks.tasks, strict=True):
        obs, action = entry.spaces["observation"], entry.spaces["action"]
        obs_shape, action_shape = list(obs.get("shape", [])), list(action.get("shape", []))
        if action.get("type") != "Box" or obs_shape != [spec.obs_size] or action_shape != [spec.action_size]:
            raise ValueError(
                f"task {entry.name!r}: spaces observation {obs_shape}, action {action.get('type')}"
                f" {action_shape}"
                f" do not fit the model's task sizes ({spec.obs_size} observations, {spec.action_size}"
                " continuous actions)"
            )
    if start_task is None:
        raise ValueError("start states of a multi-task model need task indices (StartStates.task)")
    counts = torch.bincount(start_task.long().clamp(0, len(names)), minlength=len(names) + 1)
    if int(start_task.min()) < 0 or int(start_task.max()) >= len(names):
        raise ValueError(f"start-state task indices outside [0, {len(names)})")
    empty = [names[i] for i in range(len(names)) if int(counts[i]) == 0]
    if empty:
        raise ValueError(f"task(s) {empty} have no start states: a dream of them could not start")


def write_safetensors(
    tensors: dict[str, torch.Tensor], file: Path, metadata: dict[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file``, with its I/O failures (a full disk, a read-only folder) raised as
    :class:`OSError`, so the writers above turn them into an error naming the path."""
    try:
        save_file(tensors, str(file), metadata=metadata)
    except SafetensorError as exc:
        match = re.search(r"os error (\d+)", str(exc))
        if match is None:
            raise
        code = int(match.group(1))
        raise OSError(code, os.strerror(code), str(file)) from exc


def _stored(tensor: torch.Tensor, storage: torch.dtype) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.to(storage)
    return tensor.contiguous()


def load_bundle(directory: str | os.PathLike, device: torch.device | str = "cpu") -> Bundle:
    """Load and validate a bundle directory (see module docstring)."""
    path = Path(directory)
    config = read_bundle_config(path)
    try:
        model_config = from_dict(WorldModelConfig, config["model"], path=".model")
        io = IOSpec.from_dict(config["io"])
        env_spec = EnvSpec.from_dict(config["env"])
        tasks = [BundleTask.from_dict(item) for item in _task_list(config)]
        model = WorldModel(model_config, io)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path / CONFIG_FILE}: {exc}") from exc
    if [t.name for t in tasks] != model.tasks:
        raise BundleError(
            f"{path / CONFIG_FILE}: its task list ({', '.join(t.name for t in tasks) or 'none'}) does not"
            " match"
            f" the model's io tasks ({', '.join(model.tasks) or 'none: a single-task model'}): the bundle is"
            " inconsistent (edited by hand, or mixed from two bundles); export it again"
        )
    storage = STORAGE_DTYPES[config.get("weights_dtype", "float32")]
    weights = _load_safetensors(path / WEIGHTS_FILE)
    expected = {name: _stored(t, storage) for name, t in model.state_dict().items()}
    _check_task_weights(path / WEIGHTS_FILE, weights, model)
    _check_tensors(path / WEIGHTS_FILE, weights, expected)
    _verify_checksum(path / WEIGHTS_FILE, config)
    _check_finite(path / WEIGHTS_FILE, weights)
    model.load_state_dict(weights, strict=True)
    starts = _load_safetensors(path / START_STATES_FILE)
    n = int(config.get("num_start_states", starts.get("deter", torch.empty(0)).shape[0]))
    expected = {
        "obs": torch.empty(n, *io.obs_shape, dtype=torch.uint8 if io.image else torch.float32),
        "deter": torch.empty(n, model_config.rssm.deter),
        "stoch": torch.empty(n, model_config.rssm.stoch, dtype=torch.int64),
    }
    if tasks:
        expected["task"] = torch.empty(n, dtype=torch.int64)
    _check_tensors(path / START_STATES_FILE, starts, expected)
    _verify_checksum(path / START_STATES_FILE, config)
    _check_finite(path / START_STATES_FILE, starts)
    if n and (starts["stoch"].min() < 0 or starts["stoch"].max() >= model_config.rssm.classes):
        raise BundleError(f"{path / START_STATES_FILE}: stoch class indices outside [0, classes)")
    try:
        check_tasks(model, tasks, starts.get("task"))
    except ValueError as exc:
        raise BundleError(f"{path}: {exc}: the bundle is inconsistent; export it again") from exc
    policy_tensors, policy_config = None, None
    if "policy" in config:
        policy_tensors = _load_safetensors(path / POLICY_FILE)
        _verify_checksum(path / POLICY_FILE, config)
        _check_finite(path / POLICY_FILE, policy_tensors)
        policy_config = config["policy"]
    model.to(device).eval()
    return Bundle(
        model,
        env_spec,
        config["spaces"],
        StartStates(**starts),
        config.get("info", {}),
        path,
        policy_tensors,
        policy_config,
        tasks,
    )


def _task_list(config: dict[str, Any]) -> list[Any]:
    tasks = config.get("tasks", [])
    if not isinstance(tasks, list):
        raise ValueError(f"'tasks' must be a list of task entries, got {type(tasks).__name__}")
    return tasks


def _check_task_weights(file: Path, weights: dict[str, torch.Tensor], model: WorldModel) -> None:
    """A clear error when the weights hold task embeddings for another number of tasks than listed."""
    found = weights.get("task_embed.weight")
    names = model.tasks
    if found is None and names:
        raise BundleError(
            f"{file} holds no task embedding but config.json lists {len(names)} tasks ({', '.join(names)}):"
            " the weights are of a single-task model; the bundle is inconsistent"
        )
    if found is not None and len(found.shape) == 2 and found.shape[0] != len(names):
        raise BundleError(
            f"{file} holds task embeddings for {found.shape[0]} tasks but config.json lists {len(names)}"
            f" ({', '.join(names) or 'none'}): the task list does not match the weights; export the bundle"
            " again"
        )


def _verify_checksum(file: Path, config: dict[str, Any]) -> None:
    expected = config.get("checksums", {}).get(file.name)
    if expected is not None and file_sha256(file) != expected:
        raise BundleError(
            f"{file} does not match the SHA-256 recorded in config.json: the file is corrupt or was"
            " changed after saving; download or export the bundle again (or rerun the command that wrote"
            " it, if it was interrupted)"
        )


def _check_finite(file: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse floating-point tensors holding NaN or infinity (a diverged or tampered model)."""
    bad = [n for n, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise nonfinite_error(file, bad)


def _load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise BundleError(f"{file} is missing: the bundle is incomplete (re-download or re-export it)")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(
            f"{file} is not a readable safetensors file ({exc}): the bundle is corrupt"
        ) from exc


def _check_tensors(file: Path, found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    for name in sorted(set(found) & set(expected)):
        got, want = found[name], expected[name]
        if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            problems.append(
                f"{name}: {got.dtype} {tuple(got.shape)} where the config implies"
                f" {want.dtype} {tuple(want.shape)}"
            )
    if problems:
        raise BundleError(f"{file} does not match its config.json: " + "; ".join(problems[:6]))
