"""The ONNX graphs of a bundle without torch: their names, the inputs and outputs a bundle's config
implies, the record ``wmsim export-onnx`` writes, and the checks the onnxruntime backend runs.

Graphs (``B`` is the dynamic batch size; ``F = deter + stoch * classes``, ``A`` the action size)::

    transition  feat (B, F) f32, action (B, A) f32, noise (B, S, K) f32
                -> next_feat (B, F) f32, reward (B,) f32, cont (B,) f32
    posterior   feat (B, F) f32, action (B, A) f32, is_first (B,) bool, obs (B, *obs) u8|f32,
                noise (B, S, K) f32 -> post_feat (B, F) f32
    decoder     feat (B, F) f32 -> obs (B, *obs) u8|f32
    policy      feat (B, F) f32, noise (B, A) f32 -> action, mode: (B,) i64 | (B, A) f32

``feat`` is ``concat(deter, flat(one-hot stoch))``, the dreams' ``latent`` observation. ``noise`` is
uniform in [0, 1) and fixes the categorical samples through the Gumbel-max trick, so every graph is a
deterministic function of its inputs (the policy's continuous noise is a standard normal instead).
``action`` is one-hot for a discrete model. ``cont`` is the continue probability (1 - termination).

The record (``config.json`` key ``"onnx"``, or ``onnx.json`` in a folder given to ``--out``)::

    {"format_version": 1, "opset": 17, "exported_with": {...},
     "source": {"model.safetensors": "<sha256>", ...},
     "graphs": {"transition": {"file": "onnx/transition.onnx", "sha256": "...",
                               "inputs": [{"name": "feat", "dtype": "float32", "shape": ["batch", 48]}, ...],
                               "outputs": [...], "max_abs_error": 1.2e-07}, ...}}

A multi-task bundle has one set of graphs per task, each of the model bound to that task (the same
weights, the task's embedding inside as a constant, the task's real observation and action sizes at
the graph's edge, the padding inside); its record holds ``"tasks"`` instead of ``"graphs"``, each task's
entry in the single-task structure (a policy graph only in the task its policy learned)::

    {"format_version": 1, "opset": 17, "exported_with": {...}, "source": {...},
     "tasks": {"cartpole-swingup": {"graphs": {"transition": {"file": "onnx/cartpole-swingup/transition.onnx",
                                                              ...}, ...}},
               "reacher-easy": {"graphs": {...}}}}

File paths in a record are relative to the folder that holds the record.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle_format import CONFIG_FILE, BundleError, bundle_file

RECORD_KEY = "onnx"
RECORD_FILE = "onnx.json"
RECORD_VERSION = 1
DEFAULT_SUBDIR = "onnx"
DEFAULT_OPSET = 17
GRAPHS = ("transition", "posterior", "decoder", "policy")
BATCH = "batch"
EXPORT_HINT = "wmsim export-onnx"

# onnxruntime's type strings for the dtypes the graphs use
ORT_TYPES = {
    "float32": "tensor(float)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
    "int64": "tensor(int64)",
}


class OnnxGraphError(BundleError):
    """A bundle's ONNX graphs are missing, stale, or do not match the bundle."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, dtype and shape (``"batch"`` for the dynamic first axis)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    def describe(self) -> str:
        return f"{self.name} {self.dtype} ({', '.join(str(s) for s in self.shape)})"


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def file_name(self) -> str:
        return f"{self.name}.onnx"


@dataclass(frozen=True)
class ModelDims:
    """The sizes of a bundle's model that its graphs depend on, read from ``config.json``."""

    deter: int
    stoch: int
    classes: int
    action_size: int
    discrete: bool
    obs_shape: tuple[int, ...]
    image: bool

    @property
    def feat_size(self) -> int:
        return self.deter + self.stoch * self.classes

    @classmethod
    def from_config(
        cls, config: dict[str, Any], where: Path | str = CONFIG_FILE, task: str | None = None
    ) -> ModelDims:
        """The sizes of the bundle's model, or with ``task`` (a task name of a multi-task bundle) those of
        the model bound to that task: its real observation and action sizes (``io.tasks``)."""
        try:
            rssm, io = config["model"]["rssm"], config["io"]
            obs_shape = tuple(int(s) for s in io["obs_shape"])
            action_size = int(io["action_size"])
            if task is not None:
                sizes = {t["name"]: t for t in io["tasks"]["tasks"]}
                if task not in sizes:
                    raise BundleError(
                        f"{where}: io.tasks has no task {task!r} (it has {', '.join(map(str, sizes))}): the"
                        " bundle is inconsistent (edited by hand, or mixed from two bundles); export it again"
                    )
                obs_shape, action_size = (int(sizes[task]["obs_size"]),), int(sizes[task]["action_size"])
            return cls(
                int(rssm["deter"]),
                int(rssm["stoch"]),
                int(rssm["classes"]),
                action_size,
                bool(io["discrete"]),
                obs_shape,
                bool(io["image"]),
            )
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: the model or io section is incomplete ({exc!r})") from exc


def graph_specs(dims: ModelDims) -> dict[str, GraphSpec]:
    """The inputs and outputs every graph of a model with ``dims`` must have (see module docstring)."""
    f, a, s, k = dims.feat_size, dims.action_size, dims.stoch, dims.classes
    obs_dtype = "uint8" if dims.image else "float32"
    feat = TensorSpec("feat", "float32", (BATCH, f))
    action = TensorSpec("action", "float32", (BATCH, a))
    noise = TensorSpec("noise", "float32", (BATCH, s, k))
    obs = TensorSpec("obs", obs_dtype, (BATCH, *dims.obs_shape))
    policy_action = (
        TensorSpec("action", "int64", (BATCH,))
        if dims.discrete
        else TensorSpec("action", "float32", (BATCH, a))
    )
    specs = [
        GraphSpec(
            "transition",
            (feat, action, noise),
            (
                TensorSpec("next_feat", "float32", (BATCH, f)),
                TensorSpec("reward", "float32", (BATCH,)),
                TensorSpec("cont", "float32", (BATCH,)),
            ),
        ),
        GraphSpec(
            "posterior",
            (feat, action, TensorSpec("is_first", "bool", (BATCH,)), obs, noise),
            (TensorSpec("post_feat", "float32", (BATCH, f)),),
        ),
        GraphSpec("decoder", (feat,), (obs,)),
        GraphSpec(
            "policy",
            (feat, TensorSpec("noise", "float32", (BATCH, a))),
            (policy_action, TensorSpec("mode", policy_action.dtype, policy_action.shape)),
        ),
    ]
    return {spec.name: spec for spec in specs}


# ---------------------------------------------------------------------------------------------- records
def task_subdir(name: str, index: int) -> str:
    """The folder (under the export's folder) of task ``name``'s graphs: the name itself when it is a
    plain file name, else ``task<index>``."""
    plain = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) is not None and len(name) <= 100
    return name if plain else f"task{index}"


@dataclass(frozen=True)
class OnnxRecord:
    """Where a bundle's graphs are (``root``: the folder their paths are relative to) and their record;
    for a multi-task bundle, ``task`` names the task whose graphs :attr:`graphs` gives."""

    root: Path
    source: Path  # the file that holds the record (config.json or onnx.json)
    data: dict[str, Any]
    task: str | None = None

    @property
    def graphs(self) -> dict[str, Any]:
        data = self.data
        if self.task is not None:
            tasks = data.get("tasks")
            data = tasks.get(self.task, {}) if isinstance(tasks, dict) else {}
        graphs = data.get("graphs") if isinstance(data, dict) else None
        return graphs if isinstance(graphs, dict) else {}

    def for_task(self, task: str | None) -> OnnxRecord:
        """The record of one task's graphs (``task=None``: a single-task bundle's)."""
        return OnnxRecord(self.root, self.source, self.data, task)

    def has(self, name: str) -> bool:
        return name in self.graphs

    def path(self, name: str) -> Path:
        """Where graph ``name`` is: its recorded file, which must lie inside :attr:`root`."""
        return bundle_file(self.root, self.graphs[name].get("file"), self.source)


def find_record(
    bundle_dir: Path, config: dict[str, Any], onnx_dir: str | os.PathLike | None, task: str | None = None
) -> OnnxRecord:
    """The graphs' record: ``onnx_dir/onnx.json`` when ``onnx_dir`` is given, else the bundle's
    ``config.json`` key ``"onnx"``; with ``task`` (a task of a multi-task bundle), bound to that task's
    graphs. The record must fit the bundle: per task for a multi-task bundle (each of its tasks, no other),
    else single-task, and every file inside its folder. Raises :class:`OnnxGraphError` (a
    :class:`BundleError` for a file outside the folder) with the command that makes it."""
    fix = f"run `{EXPORT_HINT} {bundle_dir}` (it needs torch) to write them"
    tasks = [t.get("name") for t in config.get("tasks", []) if isinstance(t, dict)]
    if onnx_dir is not None:
        folder = Path(onnx_dir)
        manifest = folder / RECORD_FILE
        if not manifest.is_file():
            raise OnnxGraphError(
                f"{manifest} is missing: {folder} holds no exported graphs; run"
                f" `{EXPORT_HINT} {bundle_dir} --out {folder}` to write them"
            )
        try:
            data = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OnnxGraphError(f"{manifest} is not valid JSON ({exc}): {fix}") from exc
        fix = f"run `{EXPORT_HINT} {bundle_dir} --out {folder}` (it needs torch) to write them again"
        return _checked(OnnxRecord(folder, manifest, data), fix, tasks).for_task(task)
    data = config.get(RECORD_KEY)
    if data is None:
        raise OnnxGraphError(
            f"the bundle {bundle_dir} has no ONNX graphs (its {CONFIG_FILE} has no {RECORD_KEY!r} record):"
            f" {fix}, or use backend='torch'"
        )
    fix = f"re-run `{EXPORT_HINT} {bundle_dir}` (it needs torch) to write them again"
    return _checked(OnnxRecord(bundle_dir, bundle_dir / CONFIG_FILE, data), fix, tasks).for_task(task)


def _checked(record: OnnxRecord, fix: str, tasks: list[Any]) -> OnnxRecord:
    """``record`` when it fits a bundle of ``tasks`` (empty: single-task), else an error naming the
    problem and ``fix``."""
    data, where = record.data, record.source
    if not isinstance(data, dict):
        raise OnnxGraphError(f"{where}: the ONNX record is malformed (not an object): {fix}")
    if data.get("format_version") != RECORD_VERSION:
        raise OnnxGraphError(
            f"{where}: ONNX record version {data.get('format_version')!r}; this wmsim reads"
            f" version {RECORD_VERSION}: {fix}"
        )
    per_task = data.get("tasks")
    if not tasks:
        if per_task is not None:
            raise OnnxGraphError(
                f"{where}: the ONNX record holds graphs per task ({', '.join(map(str, per_task))}), but"
                f" this bundle is single-task: the record was copied from a multi-task bundle; {fix}"
            )
        if not isinstance(data.get("graphs"), dict):
            raise OnnxGraphError(f"{where}: the ONNX record is malformed (no 'graphs'): {fix}")
        views = [record]
    else:
        listed = ", ".join(map(str, tasks))
        if per_task is None:
            raise OnnxGraphError(
                f"{where}: the ONNX record is single-task, but this bundle is multi-task ({listed}) and"
                f" needs graphs per task: the record was copied from another bundle; {fix}"
            )
        if not isinstance(per_task, dict):
            raise OnnxGraphError(f"{where}: the ONNX record's 'tasks' is malformed (not an object): {fix}")
        missing = [t for t in tasks if t not in per_task]
        if missing:
            raise OnnxGraphError(
                f"{where}: the ONNX record has no graphs of task(s) {missing} (it has"
                f" {', '.join(map(str, per_task)) or 'none'}; the bundle's tasks are {listed}): the export is"
                f" incomplete or of another bundle; {fix}"
            )
        extra = [t for t in per_task if t not in tasks]
        if extra:
            raise OnnxGraphError(
                f"{where}: the ONNX record has graphs of task(s) {extra} that this bundle does not hold"
                f" (its tasks are {listed}): the record is of another bundle; {fix}"
            )
        for name in tasks:
            entry = per_task[name]
            if not isinstance(entry, dict) or not isinstance(entry.get("graphs"), dict):
                raise OnnxGraphError(
                    f"{where}: the ONNX record of task {name!r} is malformed (no 'graphs'): {fix}"
                )
        views = [record.for_task(name) for name in tasks]
    for view in views:
        for name, graph in view.graphs.items():
            if not isinstance(graph, dict):
                of = f" of task {view.task!r}" if view.task is not None else ""
                raise OnnxGraphError(f"{where}: the ONNX record of graph {name!r}{of} is malformed: {fix}")
            view.path(name)  # refuses a file outside the folder before anything opens it
    return record


def check_io(
    file: Path,
    found_inputs: list[tuple[str, str, list[Any]]],
    found_outputs: list[tuple[str, str, list[Any]]],
    spec: GraphSpec,
    fix: str,
    subject: str = "this bundle",
) -> None:
    """Compare a graph's actual inputs/outputs (``(name, ort type string, shape)``) with ``spec`` (the
    graph ``subject``, a bundle or one of its tasks, implies); raise :class:`OnnxGraphError` naming the
    file, each difference and ``fix``."""
    problems: list[str] = []
    for what, found, wanted in (
        ("inputs", found_inputs, spec.inputs),
        ("outputs", found_outputs, spec.outputs),
    ):
        names = [name for name, _, _ in found]
        if names != [t.name for t in wanted]:
            problems.append(f"{what} {names} where {[t.name for t in wanted]} are expected")
            continue
        for (name, type_str, shape), want in zip(found, wanted, strict=True):
            if type_str != ORT_TYPES[want.dtype] or not _shape_matches(shape, want.shape):
                got = f"{type_str} {tuple(shape)}"
                problems.append(f"{what[:-1]} {name}: {got} where {subject} implies {want.describe()}")
    if problems:
        origin = "another model or task" if subject != "this bundle" else "another model"
        raise OnnxGraphError(
            f"{file} does not fit {subject} ({'; '.join(problems[:4])}): it was exported from {origin}"
            f" (or copied in by hand); {fix}"
        )


def _shape_matches(found: list[Any], wanted: tuple[int | str, ...]) -> bool:
    if len(found) != len(wanted):
        return False
    for got, want in zip(found, wanted, strict=True):
        if want == BATCH:
            if isinstance(got, int) and got > 0:
                return False  # a graph exported with a fixed batch size
        elif got != want:
            return False
    return True
