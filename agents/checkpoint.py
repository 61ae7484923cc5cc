"""Resumable training state in safetensors + JSON (nothing is pickled).

A checkpoint is a directory ``<logdir>/checkpoints/step-<env_step>/`` holding ``modules.safetensors``
(every module's weights under ``<name>/...`` and every optimiser's moments under ``optim/<name>/...``)
and ``state.json`` (counters, optimiser hyper-parameters, RNG states). The file
``<logdir>/checkpoints/latest`` names the newest one (for people and tools; resuming reads the
directories). A checkpoint directory is built beside its final name and renamed into place, so one
exists complete or not at all and a run killed at any moment resumes from the last complete one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from wmsim.bundle import write_safetensors
from wmsim.fileio import (
    atomic_directory,
    atomic_write,
    atomic_write_text,
    ensure_directory,
    remove_temporaries,
)

log = logging.getLogger(__name__)

LATEST = "latest"
KEEP = 2
MODULES_FILE = "modules.safetensors"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
#: Files and folders of a run directory that are written atomically (the prefix of event files).
RUN_FILES = (
    "run.json",
    "pretrain_config.json",
    "dataset.json",
    METRICS_FILE,
    "openloop.json",
    "bundle",
    "checkpoints",
    "events.out.tfevents",
)
CHECKPOINT_PATTERN = re.compile(r"^step-\d{12,}$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the run."""


def _flatten_optimizer(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim/{name}/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(
    name: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: Any
) -> None:
    prefix = f"optim/{name}/"
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, field = key[len(prefix) :].split("/", 1)
            state.setdefault(int(index), {})[field] = value
    for index, scalars in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    logdir: str | os.PathLike,
    step: int,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    state: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a complete checkpoint for ``step`` and point ``latest`` at it; older ones beyond the
    newest ``KEEP`` are deleted. The directory is built beside its final name and renamed into place
    (:func:`wmsim.fileio.atomic_directory`), so it exists complete or not at all."""
    root = ensure_directory(Path(logdir) / "checkpoints", "checkpoint folder")
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}/{key}"] = value.detach().cpu().contiguous()
    optim_meta = {}
    for name, optimizer in optimizers.items():
        flat, meta = _flatten_optimizer(name, optimizer)
        tensors.update(flat)
        optim_meta[name] = meta
    for key, value in (extra_tensors or {}).items():
        tensors[f"extra/{key}"] = value.detach().cpu().contiguous()

    def write(folder: Path) -> None:
        write_safetensors(tensors, folder / MODULES_FILE)
        (folder / STATE_FILE).write_text(json.dumps({"step": step, "state": state, "optimizers": optim_meta}))

    final = atomic_directory(root / checkpoint_name(step), write)
    atomic_write_text(root / LATEST, final.name)
    older = [p for p in list_checkpoints(logdir) if p.name != final.name]
    for old in older[KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
    return root / final.name


def checkpoint_name(step: int) -> str:
    return f"step-{step:012d}"


def list_checkpoints(logdir: str | os.PathLike) -> list[Path]:
    """The complete checkpoint directories of a run, newest first (each one is complete or absent: see
    :func:`save_checkpoint`)."""
    root = Path(logdir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if CHECKPOINT_PATTERN.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def latest_checkpoint(logdir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory of a run, or None."""
    found = list_checkpoints(logdir)
    return found[0] if found else None


def read_checkpoint_state(path: str | os.PathLike) -> tuple[int, dict[str, Any]]:
    """``(step, state)`` of a checkpoint from its ``state.json`` alone (no tensors are read)."""
    path = Path(path)
    try:
        meta = json.loads((path / STATE_FILE).read_text())
        return int(meta["step"]), dict(meta["state"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({exc}): delete it to resume from the one before"
        ) from exc


def remove_killed_writes(logdir: str | os.PathLike) -> None:
    """Finish or delete what writes killed mid-way left in a run directory (temporary files and
    folders of run files, checkpoints and the bundle). Only the process that owns the run calls this."""
    logdir = Path(logdir)
    for folder, names in (
        (logdir, RUN_FILES),  # the run folder may hold the user's own files: only ours
        (logdir / "checkpoints", None),
        (logdir / "bundle", None),
    ):
        for path in remove_temporaries(folder, names):
            log.info("deleted %s, left by an interrupted write", path)


def load_checkpoint(
    path: str | os.PathLike,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> tuple[int, dict[str, Any], dict[str, torch.Tensor]]:
    """Restore modules and optimisers in place; returns ``(step, state, extra_tensors)``."""
    path = Path(path)
    try:
        meta = json.loads((path / STATE_FILE).read_text())
        tensors = load_file(str(path / MODULES_FILE))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({exc}): delete it to restart the run"
        ) from exc
    for name, module in modules.items():
        prefix = f"{name}/"
        weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint {path} does not fit the model '{name}' of this run: {str(exc)[:300]}"
                " — use another --logdir or the run's original options"
            ) from exc
    for name, optimizer in optimizers.items():
        _unflatten_optimizer(name, optimizer, tensors, meta["optimizers"][name])
    extra = {k[len("extra/") :]: v for k, v in tensors.items() if k.startswith("extra/")}
    return int(meta["step"]), meta["state"], extra


def rewind_logs(logdir: str | os.PathLike, key: str, step: int) -> None:
    """Forget what a killed run logged beyond ``step`` (the checkpoint it resumes from; 0 when it starts
    over): rows of ``metrics.jsonl`` whose ``key`` lies beyond it, and TensorBoard events past it. The
    resumed run logs those steps again, so every step has one row and one event per tag."""
    logdir = Path(logdir)
    drop_metrics_after(logdir / METRICS_FILE, key, step)
    drop_events_after(logdir, step)


def drop_metrics_after(path: str | os.PathLike, key: str, step: int) -> int:
    """Remove the rows of a ``metrics.jsonl`` whose ``key`` lies beyond ``step``; returns how many.

    A run killed between checkpoints has logged steps that its resumed run logs again; dropping them
    keeps one row per step, so curves read as one run. A row the kill cut short is dropped too. The
    file is rewritten atomically.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line in lines if _logged_at(line, key) <= step]
    if len(kept) == len(lines):
        return 0
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def drop_events_after(logdir: str | os.PathLike, step: int) -> int:
    """Remove the TensorBoard events of ``logdir``'s event files whose step lies beyond ``step`` (and a
    record a kill cut short), rewriting each affected file atomically; returns how many were dropped."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    dropped = 0
    for file in sorted(Path(logdir).glob("events.out.tfevents.*")):
        if not file.is_file():
            continue
        records = list(RawEventFileLoader(str(file)).Load())
        kept = [r for r in records if event_pb2.Event.FromString(r).step <= step]
        if len(kept) == len(records) and _records_size(records) == file.stat().st_size:
            continue

        def write(tmp: Path, kept: list[bytes] = kept) -> None:
            with open(tmp, "wb") as handle:
                writer = RecordWriter(handle)
                for record in kept:
                    writer.write(record)

        atomic_write(file, write)
        dropped += len(records) - len(kept)
    return dropped


def _records_size(records: list[bytes]) -> int:
    """Bytes of ``records`` in TFRecord framing (8 length + 4 crc + data + 4 crc each)."""
    return sum(16 + len(record) for record in records)


def _logged_at(line: str, key: str) -> float:
    try:
        row = json.loads(line)
        return float(row[key])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return float("inf")
