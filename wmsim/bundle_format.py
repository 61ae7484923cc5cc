"""The bundle format without torch: file names, the format version, the error type and the reader of
``config.json`` (used by the onnxruntime backend and by the Hub tools, which must not import torch).
See :mod:`wmsim.bundle` for the layout."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
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
OPTIONAL_KEYS = ("num_start_states", "weights_dtype", "checksums", "info", "policy", "onnx")


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
    storage = config.get("weights_dtype", "float32")
    if storage not in STORAGE_DTYPE_NAMES:
        raise BundleError(
            f"{config_path}: weights_dtype {storage!r} is not one of {STORAGE_DTYPE_NAMES}: the bundle is"
            " corrupt or from a newer wmsim"
        )
    return config


def file_sha256(file: Path) -> str:
    """The SHA-256 of a file, hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
