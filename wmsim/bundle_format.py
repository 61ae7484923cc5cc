"""The bundle format without torch: file names, the format version, the error type and the reader of
``config.json`` (used by the onnxruntime backend and by the Hub tools, which must not import torch).
See :mod:`wmsim.bundle` for the layout."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from . import __version__
from .fileio import interrupted_swap

FORMAT = "wmsim-bundle"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
START_STATES_FILE = "start_states.safetensors"
POLICY_FILE = "policy.safetensors"
CARD_FILE = "README.md"
#: How the world model's floating-point weights may be stored.
STORAGE_DTYPE_NAMES = ("float32", "float16", "bfloat16")
#: Top-level keys of config.json: required ones, then optional ones.
REQUIRED_KEYS = ("format", "format_version", "wmsim_version", "env", "spaces", "io", "model")
OPTIONAL_KEYS = ("num_start_states", "weights_dtype", "checksums", "info", "policy", "onnx", "tasks")


class BundleError(ValueError):
    """A bundle directory is missing, incomplete, corrupt or from another program."""


def read_bundle_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The validated ``config.json`` of a bundle directory."""
    path = Path(directory)
    if not path.is_dir():
        staged = interrupted_swap(path)
        if staged is not None:
            raise BundleError(
                f"no bundle directory at {path}: a command writing it was interrupted and left the new"
                f" bundle in {staged}: rerun that command (or rename {staged.name} to {path.name})"
            )
        raise BundleError(f"no bundle directory at {path}: pass the folder that holds {CONFIG_FILE}")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise BundleError(f"{path} holds no {CONFIG_FILE}: it is not a wmsim bundle (or it is incomplete)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{config_path} is not valid JSON ({exc}): the bundle is corrupt") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise BundleError(f"{config_path} is not a wmsim bundle config (its 'format' is not {FORMAT!r})")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{config_path} has bundle format version {version!r}; this wmsim ({__version__}) reads"
            f" version {FORMAT_VERSION}: upgrade wmsim or re-export the bundle"
        )
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise BundleError(f"{config_path} lacks the key(s) {missing}: the bundle is incomplete")
    unknown = sorted(set(config) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise BundleError(
            f"{config_path} has unknown field(s) {unknown} (written by wmsim"
            f" {config.get('wmsim_version')!r}; this is {__version__}): upgrade wmsim, or remove them"
            " if the file was edited by hand"
        )
    starts = config.get("num_start_states", 0)
    if not isinstance(starts, int) or isinstance(starts, bool) or starts < 0:
        raise BundleError(
            f"{config_path}: num_start_states={starts!r} must be an integer >= 0: the bundle is corrupt or"
            " was edited by hand"
        )
    onnx = config.get("onnx")
    graphs = onnx.get("graphs") if isinstance(onnx, dict) else None
    tasks = onnx.get("tasks") if isinstance(onnx, dict) else None  # a multi-task bundle's graphs
    for entry in [{"graphs": graphs}, *(tasks.values() if isinstance(tasks, dict) else ())]:
        records = entry.get("graphs") if isinstance(entry, dict) else None
        for graph in (records if isinstance(records, dict) else {}).values():
            if isinstance(graph, dict) and "file" in graph:
                bundle_file(path, graph["file"], config_path)
    storage = config.get("weights_dtype", "float32")
    if storage not in STORAGE_DTYPE_NAMES:
        raise BundleError(
            f"{config_path}: weights_dtype {storage!r} is not one of {STORAGE_DTYPE_NAMES}: the bundle is"
            " corrupt or from a newer wmsim"
        )
    return config


def bundle_file(root: Path, name: Any, source: Path | str) -> Path:
    """``root / name`` for a file name read from ``source`` (a bundle's ``config.json`` or an ONNX
    record), refused with a :class:`BundleError` unless it is a relative path that stays inside
    ``root``: no absolute path, drive or ``..`` part (``\\`` counts as a separator). Nothing is opened
    to decide, so a hostile bundle cannot probe which files exist outside it. (Symbolic links inside the
    folder are followed: the Hub cache is made of them.)"""
    text = name.replace("\\", "/") if isinstance(name, str) else None
    parts = PurePosixPath(text).parts if text else ()
    if (
        not text
        or "\x00" in text
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).drive
        or any(part == ".." for part in parts)
        or not parts
    ):
        raise BundleError(
            f"{source} names the file {name!r}, which is not a path inside the bundle folder {root}: the"
            " bundle was tampered with; refusing to open it (get the bundle again from its author)"
        )
    return root.joinpath(*parts)


def task_index(
    task: Any, names: Sequence[str], env_ids: Sequence[str], where: str, env_id: str = ""
) -> int | None:
    """Which task of a bundle ``task=`` names: its index in ``names`` (``task`` is a task name, or its env
    id in ``env_ids``, e.g. ``"dmc/reacher-easy"``), or None for a single-task bundle (``names`` empty)
    and no ``task``. A ValueError lists the tasks when ``task`` is missing or unknown, or says that the
    bundle (``where``; ``env_id``: its env) is single-task. Every backend resolves ``task=`` here (the
    torch one through :meth:`wmsim.Bundle.for_task`, onnxruntime from ``config.json``)."""
    if task is None:
        if names:
            raise ValueError(
                f"this world model is multi-task: pass task= one of {', '.join(names)}"
                ' (gym.make("wmsim/Dream", model=..., task=...))'
            )
        return None
    if not isinstance(task, str):
        raise ValueError(f"task={task!r} must be a task name (a string)")
    if not names:
        raise ValueError(
            f"task={task!r}: {where} is single-task{f' ({env_id})' if env_id else ''}; leave task out"
        )
    if task in names:
        return list(names).index(task)
    if task in env_ids:
        return list(env_ids).index(task)
    raise ValueError(f"unknown task {task!r}: {where} holds the tasks {', '.join(names)}")


def nonfinite_error(file: Path, names: list[str]) -> BundleError:
    """The error for tensors of ``file`` that hold NaN or infinity."""
    shown = sorted(names)
    return BundleError(
        f"{file}: tensor(s) {shown[:5]}{' ...' if len(shown) > 5 else ''} hold NaN or infinite values: the"
        " model is unusable (its training diverged, or the file was tampered with); retrain it or get the"
        " bundle again"
    )


def file_sha256(file: Path) -> str:
    """The SHA-256 of a file, hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
