"""Resumable training state in safetensors + JSON (nothing is pickled).

A checkpoint is a directory ``<logdir>/checkpoints/step-<env_step>/`` holding ``modules.safetensors``
(every module's weights under ``<name>/...`` and every optimiser's moments under ``optim/<name>/...``)
and ``state.json`` (counters, optimiser hyper-parameters, RNG states). The file
``<logdir>/checkpoints/latest`` names the newest complete checkpoint and is replaced atomically after
the directory is fully written, so a run killed at any moment resumes from the last complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

LATEST = "latest"
KEEP = 2


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
    newest ``KEEP`` are deleted."""
    root = Path(logdir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
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
    save_file(tensors, str(tmp / "modules.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "state": state, "optimizers": optim_meta}))
    for file in tmp.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    final = root / f"step-{step:012d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / ".latest.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, root / LATEST)
    older = sorted(p for p in root.glob("step-*") if p != final)
    for old in older[: max(0, len(older) - (KEEP - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(logdir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory of a run, or None."""
    root = Path(logdir) / "checkpoints"
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(
    path: str | os.PathLike,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> tuple[int, dict[str, Any], dict[str, torch.Tensor]]:
    """Restore modules and optimisers in place; returns ``(step, state, extra_tensors)``."""
    path = Path(path)
    try:
        meta = json.loads((path / "state.json").read_text())
        tensors = load_file(str(path / "modules.safetensors"))
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
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metrics-")
    with os.fdopen(handle, "w") as out:
        out.write("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
    return len(lines) - len(kept)


def _logged_at(line: str, key: str) -> float:
    try:
        row = json.loads(line)
        return float(row[key])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return float("inf")
