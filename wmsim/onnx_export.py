"""Export a bundle's world model to ONNX graphs for the onnxruntime dream backend (``wmsim export-onnx``).

Writes ``transition.onnx``, ``posterior.onnx``, ``decoder.onnx`` and, when the caller passes a policy
exporter and the bundle holds a policy, ``policy.onnx`` (see :mod:`wmsim.onnx_format` for their inputs
and outputs). Each graph is exported with a dynamic batch axis through torch's TorchScript exporter,
checked with ``onnx.checker`` (full shape inference), run once through onnxruntime against the torch
model on a small batch, and only then renamed into place; the record (opset, names, shapes, dtypes,
sha256 of every file) goes into the bundle's ``config.json`` under ``"onnx"``, or into ``onnx.json``
when the graphs are written to a folder outside the bundle.

A multi-task bundle gets one such set of graphs per task, in a folder per task (``onnx/<task>/``): the
same export (:func:`export_model`) applied to each task's bundle (:meth:`wmsim.Bundle.for_task`: the
model bound to the task, same weights, so the graphs take and give the task's real sizes, pad inside
and hold the task's embedding as a constant).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .bundle import Bundle, load_bundle
from .bundle_format import (
    CONFIG_FILE,
    POLICY_FILE,
    WEIGHTS_FILE,
    BundleError,
    file_sha256,
    read_bundle_config,
)
from .fileio import atomic_write, atomic_write_json
from .onnx_format import (
    BATCH,
    DEFAULT_OPSET,
    DEFAULT_SUBDIR,
    RECORD_FILE,
    RECORD_KEY,
    RECORD_VERSION,
    GraphSpec,
    ModelDims,
    graph_specs,
    task_subdir,
)
from .world_model import WorldModel

#: Builds the policy graph's module for a bundle: ``forward(feat (B, F), noise (B, A)) -> (action, mode)``
#: (see :mod:`wmsim.onnx_format`). The agents package provides one; wmsim knows no agent code.
PolicyExporter = Callable[[Bundle], nn.Module]

# Largest difference between onnxruntime and torch accepted at export on the continuous outputs.
TOLERANCE = 1e-3


def gumbel_one_hot(logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The categorical sample of :func:`wmsim.rssm.sample_one_hot` for the given uniform ``noise``, as an
    exact one-hot (no straight-through term: the graphs are for inference)."""
    gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1.0 - 1e-7)))
    index = (logits + gumbel).argmax(-1)
    classes = torch.arange(logits.shape[-1], device=logits.device)
    return (index.unsqueeze(-1) == classes).to(logits.dtype)


class _Graph(nn.Module):
    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model
        rssm = model.config.rssm
        self.deter, self.stoch, self.classes = rssm.deter, rssm.stoch, rssm.classes

    def prior_deter(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The recurrent step of :meth:`wmsim.rssm.RSSM.img_step` on flat features; ``action`` as the RSSM
        takes it (:meth:`WorldModel.transition_input`: padded, with the task embedding of a bound model)."""
        rssm = self.model.rssm
        hidden = rssm.img_in(torch.cat([feat[:, self.deter :], action], -1))
        return rssm.gru(hidden, feat[:, : self.deter])

    def sample(self, flat_logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return gumbel_one_hot(flat_logits.reshape(-1, self.stoch, self.classes), noise).flatten(1)


class TransitionGraph(_Graph):
    """:meth:`WorldModel.step` on features: prior transition, reward head, continue probability."""

    def forward(
        self, feat: torch.Tensor, action: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        deter = self.prior_deter(feat, self.model.transition_input(action))
        next_feat = torch.cat([deter, self.sample(self.model.rssm.img_out(deter), noise)], -1)
        reward = self.model.reward(next_feat)
        if self.model.discount_head is None:
            cont = torch.ones_like(reward)
        else:
            cont = self.model.continue_prob(next_feat)
        return next_feat, reward, cont


class PosteriorGraph(_Graph):
    """:meth:`RSSM.obs_step` after :meth:`WorldModel.encode`: the posterior features of ``obs`` given the
    previous features and action (both zeroed where ``is_first``)."""

    def forward(
        self,
        feat: torch.Tensor,
        action: torch.Tensor,
        is_first: torch.Tensor,
        obs: torch.Tensor,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        keep = (~is_first).to(feat.dtype).unsqueeze(-1)
        deter = self.prior_deter(feat * keep, self.model.transition_input(action) * keep)
        if self.model.io.image:
            # WorldModel.prepare_obs with an explicit permutation (the exporter writes movedim as a
            # Transpose with negative axes, which onnx.checker refuses)
            embed = self.model.encoder(obs.permute(0, 3, 1, 2).float() / 255.0 - 0.5)
        else:
            embed = self.model.encode(obs)
        logits = self.model.rssm.obs_out(torch.cat([deter, embed], -1))
        return torch.cat([deter, self.sample(logits, noise)], -1)


class DecoderGraph(_Graph):
    """Decoded observations in the env's format (uint8 images, float vectors)."""

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        output = self.model.decode(feat)
        if self.model.io.image:  # WorldModel.obs_from_output, permuted explicitly (see PosteriorGraph)
            return ((output.permute(0, 2, 3, 1) + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8)
        return self.model.obs_from_output(output)


# ---------------------------------------------------------------------------------------------- inputs
def _example_inputs(spec: GraphSpec, bundle: Bundle, batch: int, seed: int) -> list[torch.Tensor]:
    """Plausible inputs for ``spec``: start-state features, random actions, uniform noise, real frames."""
    gen = torch.Generator().manual_seed(seed)
    model = bundle.model
    rssm = model.config.rssm
    starts = bundle.start_states
    index = torch.randint(len(starts), (batch,), generator=gen) if len(starts) else None
    tensors: list[torch.Tensor] = []
    for tensor in spec.inputs:
        shape = [batch if dim == BATCH else int(dim) for dim in tensor.shape]
        if tensor.name == "feat":
            if index is not None:
                state = starts.state(index, rssm.classes)
                tensors.append(torch.cat([state.deter, state.stoch.flatten(1)], -1).float())
            else:
                tensors.append(torch.rand(shape, generator=gen) * 2 - 1)
        elif tensor.name == "action" and model.io.discrete and spec.name != "policy":
            choice = torch.randint(model.io.action_size, (batch,), generator=gen)
            tensors.append(nn.functional.one_hot(choice, model.io.action_size).float())
        elif tensor.name == "action":
            tensors.append(torch.rand(shape, generator=gen) * 2 - 1)
        elif tensor.name == "is_first":
            tensors.append(torch.arange(batch) % 2 == 0)
        elif tensor.name == "obs":
            if index is not None:
                tensors.append(starts.obs[index].to(torch.uint8 if model.io.image else torch.float32))
            elif model.io.image:
                tensors.append(torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8))
            else:
                tensors.append(torch.randn(shape, generator=gen))
        elif tensor.name == "noise" and spec.name == "policy" and not model.io.discrete:
            tensors.append(torch.randn(shape, generator=gen))
        else:
            tensors.append(torch.rand(shape, generator=gen))
    return tensors


# ---------------------------------------------------------------------------------------------- export
def export_graph(
    module: nn.Module,
    spec: GraphSpec,
    bundle: Bundle,
    target: Path,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
) -> dict[str, Any]:
    """Export ``module`` as ``target`` with the inputs and outputs of ``spec``, check it and (with
    ``verify``) compare onnxruntime with torch; returns the graph's record entry."""
    import onnx

    module = module.eval()
    example = _example_inputs(spec, bundle, batch=3, seed=0)
    names = [t.name for t in spec.inputs] + [t.name for t in spec.outputs]
    dynamic = {name: {0: BATCH} for name in dict.fromkeys(names)}
    error: float | None = None

    def write(tmp: Path) -> None:
        nonlocal error
        with warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*will be removed.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                tuple(example),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[t.name for t in spec.inputs],
                output_names=[t.name for t in spec.outputs],
                dynamic_axes=dynamic,
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        _set_shapes(proto, spec)
        proto.doc_string = f"wmsim {__version__}: {spec.name} graph of a DreamerV2 world model"
        onnx.save(proto, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise BundleError(f"the exported {spec.name} graph fails onnx.checker: {exc}") from exc
        if verify:
            error = _verify(module, spec, bundle, tmp)

    atomic_write(target, write)
    entry: dict[str, Any] = {
        "file": target.name,
        "sha256": file_sha256(target),
        "inputs": [t.to_dict() for t in spec.inputs],
        "outputs": [t.to_dict() for t in spec.outputs],
    }
    if error is not None:
        entry["max_abs_error"] = error
    return entry


def _set_shapes(proto: Any, spec: GraphSpec) -> None:
    """Name the batch axis and write the fixed sizes on every input and output (the exporter leaves
    generated names on some outputs)."""
    wanted = {t.name: t for t in (*spec.inputs, *spec.outputs)}
    for value in (*proto.graph.input, *proto.graph.output):
        want = wanted[value.name]
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in want.shape:
            dim = dims.add()
            if size == BATCH:
                dim.dim_param = BATCH
            else:
                dim.dim_value = int(size)


def _verify(module: nn.Module, spec: GraphSpec, bundle: Bundle, file: Path) -> float:
    """Run the graph in onnxruntime and torch on a fresh batch; raise when they disagree. Returns the
    largest absolute difference of the continuous outputs."""
    import onnxruntime as ort

    inputs = _example_inputs(spec, bundle, batch=5, seed=1)
    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    feeds = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs, strict=True)}
    got = session.run(None, feeds)
    with torch.no_grad():
        out = module(*inputs)
    want = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    rssm = bundle.model.config.rssm
    worst = 0.0
    for tensor, a, b in zip(spec.outputs, got, want, strict=True):
        if tensor.name in ("next_feat", "post_feat"):
            # the categorical part is a sample: compare the classes, not the values
            cont_a, cont_b = a[:, : rssm.deter], b[:, : rssm.deter]
            same = (a[:, rssm.deter :] == b[:, rssm.deter :]).mean()
            if same < 0.95:
                raise BundleError(
                    f"the exported {spec.name} graph samples other categories than torch ({same:.1%} equal)"
                )
        elif a.dtype == np.uint8:
            cont_a, cont_b = a.astype(np.float32) / 255.0, b.astype(np.float32) / 255.0
        elif a.dtype == np.int64:
            if (a != b).mean() > 0.05:
                raise BundleError(f"the exported {spec.name} graph picks other {tensor.name}s than torch")
            continue
        else:
            cont_a, cont_b = a, b
        diff = float(np.abs(cont_a.astype(np.float64) - cont_b).max()) if a.size else 0.0
        limit = TOLERANCE if a.dtype != np.uint8 else 1.5 / 255.0  # one rounding step of a pixel
        if diff > limit:
            raise BundleError(
                f"the exported {spec.name} graph's {tensor.name} differs from torch by {diff:.3g}"
                f" (more than {limit:.3g}): report this with the bundle's config.json"
            )
        worst = max(worst, diff if a.dtype != np.uint8 else 0.0)
    return worst


def export_model(
    bundle: Bundle,
    specs: dict[str, GraphSpec],
    folder: Path,
    base: Path,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    policy_exporter: PolicyExporter | None = None,
) -> dict[str, Any]:
    """Export the graphs of ``bundle``'s model into ``folder``: a single-task bundle, or one task's bundle
    of a multi-task one (:meth:`wmsim.Bundle.for_task`); ``specs`` are the graphs' inputs and outputs
    (:func:`~wmsim.onnx_format.graph_specs` of the model's sizes), ``base`` the folder the recorded file
    paths are relative to. Returns the record's ``graphs`` entry."""
    modules: dict[str, nn.Module] = {
        "transition": TransitionGraph(bundle.model),
        "posterior": PosteriorGraph(bundle.model),
        "decoder": DecoderGraph(bundle.model),
    }
    if policy_exporter is not None and bundle.has_policy:
        modules["policy"] = policy_exporter(bundle)
    graphs: dict[str, Any] = {}
    for name, module in modules.items():
        spec = specs[name]
        entry = export_graph(module, spec, bundle, folder / spec.file_name, opset, verify)
        entry["file"] = Path(os.path.relpath(folder / spec.file_name, base)).as_posix()
        graphs[name] = entry
    return graphs


def export_onnx(
    bundle_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    policy_exporter: PolicyExporter | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Export the graphs of the bundle in ``bundle_dir`` (see module docstring); returns the record.

    Args:
        bundle_dir: a bundle directory (it must hold ``model.safetensors``).
        out: where to write the graphs; default ``<bundle>/onnx`` with the record in the bundle's
            ``config.json``. A folder outside the bundle gets the graphs and an ``onnx.json`` record, and
            the bundle is not touched (pass it as ``onnx_dir=`` to the onnxruntime backend). A
            multi-task bundle's graphs go into a subfolder per task (``onnx/<task>/``).
        opset: the ONNX opset (17 or newer: the GRU's layer norm is one ``LayerNormalization`` node).
        policy_exporter: builds the policy's module when the bundle has a policy (``agents`` gives one);
            None exports no policy graph. A multi-task bundle's policy is exported with the graphs of the
            task it learned (its config's ``task``).
        verify: run every graph in onnxruntime against torch before keeping it.

    Raises:
        BundleError: the bundle is missing, incomplete or corrupt (the message names the file), or a
            graph fails ``onnx.checker`` or the comparison with torch.
    """
    path = Path(bundle_dir)
    if opset < 17:
        raise ValueError(f"opset={opset}: use 17 or newer (LayerNormalization is an operator from 17 on)")
    config = read_bundle_config(path)  # a clear error first when the folder is not a bundle
    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        raise BundleError(f"cannot export {path} to ONNX: {exc}") from exc
    target = Path(out) if out is not None else path / DEFAULT_SUBDIR
    in_bundle = _inside(target, path)
    base = path if in_bundle else target

    def graphs_of(
        task: str | None, unit: Bundle, folder: Path, exporter: PolicyExporter | None
    ) -> dict[str, Any]:
        specs = graph_specs(ModelDims.from_config(config, path / CONFIG_FILE, task))
        return export_model(unit, specs, folder, base, opset, verify, exporter)

    if bundle.tasks:  # one set per task, of the model bound to it; the policy with its own task's
        policy_task = (bundle.policy_config or {}).get("task")
        per_task = {
            name: {
                "graphs": graphs_of(
                    name,
                    bundle.for_task(name),
                    target / task_subdir(name, index),
                    policy_exporter if name == policy_task else None,
                )
            }
            for index, name in enumerate(bundle.task_names)
        }
        body: dict[str, Any] = {"tasks": per_task}
        exported = [graph for entry in per_task.values() for graph in entry["graphs"]]
    else:
        body = {"graphs": graphs_of(None, bundle, target, policy_exporter)}
        exported = list(body["graphs"])
    source = {WEIGHTS_FILE: file_sha256(path / WEIGHTS_FILE)}
    if "policy" in exported:
        source[POLICY_FILE] = file_sha256(path / POLICY_FILE)
    import onnx

    record: dict[str, Any] = {
        "format_version": RECORD_VERSION,
        "opset": opset,
        "exported_with": {"wmsim": __version__, "torch": torch.__version__, "onnx": onnx.__version__},
        "source": source,
        **body,
    }
    if in_bundle:
        config = json.loads((path / CONFIG_FILE).read_text())  # re-read: write back only the new key
        config[RECORD_KEY] = record
        atomic_write_json(path / CONFIG_FILE, config)
    else:
        atomic_write_json(target / RECORD_FILE, {**record, "bundle": str(path.resolve())})
    return record


def record_path(bundle_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """The file :func:`export_onnx` writes the record into for these arguments."""
    path = Path(bundle_dir)
    target = Path(out) if out is not None else path / DEFAULT_SUBDIR
    return path / CONFIG_FILE if _inside(target, path) else target / RECORD_FILE


def _inside(folder: Path, bundle: Path) -> bool:
    try:
        folder.resolve().relative_to(bundle.resolve())
    except ValueError:
        return False
    return True


def format_record(record: dict[str, Any]) -> str:
    """The record as a short table: one line per graph with its inputs and outputs (per task for a
    multi-task bundle)."""
    lines = [f"ONNX opset {record['opset']}:"]
    groups = (
        [(f"  task {name}:", "    ", entry["graphs"]) for name, entry in record["tasks"].items()]
        if "tasks" in record
        else [(None, "  ", record["graphs"])]
    )
    for title, indent, graphs in groups:
        if title is not None:
            lines.append(title)
        for entry in graphs.values():
            ins = ", ".join(f"{t['name']}{tuple(t['shape'])}" for t in entry["inputs"])
            outs = ", ".join(f"{t['name']}{tuple(t['shape'])}" for t in entry["outputs"])
            error = entry.get("max_abs_error")
            check = f"  (max |ort - torch| {error:.1e})" if error is not None else ""
            lines.append(f"{indent}{entry['file']}: {ins} -> {outs}{check}")
    return "\n".join(lines)
