"""The onnxruntime backend of the dreams: the bundle's exported ONNX graphs stepped with numpy arrays.

:class:`OrtSimulator` is the :class:`~wmsim.dream.backend.DreamBackend` behind
``DreamVectorEnv(..., backend="onnxruntime")`` (``gym.make(env_id, backend="onnxruntime")``,
``gym.make_vec(env_id, num_envs, backend="onnxruntime")``), ``DreamEnv`` and ``LatentObservation``:
the same environments as on torch, over the graphs ``wmsim export-onnx BUNDLE_DIR`` writes. Nothing
here imports torch: numpy, onnxruntime, gymnasium and ``safetensors.numpy`` are all it needs.

Randomness (start-state draws, the categorical samples, sampled terminations) comes from one
``numpy.random.Generator`` per env, seeded by ``seed=`` and re-seeded by ``reset(seed=...)``: the same
seed and actions give the same trajectory. The streams differ from the torch backend's (torch's
generator draws other numbers), so the two backends agree in distribution, and exactly when fed the
same noise (see ``tests/wmsim/test_onnx.py``).

A multi-task bundle is dreamed one task at a time (``task=``, resolved as on torch): the task's graphs
(exported per task), its real spaces, time limit and start states.

:class:`OrtPolicy` plays a bundle's exported policy on latent observations.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import gymnasium as gym
import numpy as np

from ..bundle_format import (
    CONFIG_FILE,
    START_STATES_FILE,
    WEIGHTS_FILE,
    BundleError,
    file_sha256,
    nonfinite_error,
    read_bundle_config,
    task_index,
)
from ..envs.spaces import space_from_dict
from ..envs.spec import EnvSpec
from ..onnx_format import (
    EXPORT_HINT,
    GraphSpec,
    ModelDims,
    OnnxGraphError,
    OnnxRecord,
    check_io,
    find_record,
    graph_specs,
)
from ..registry import resolve_model_dir
from .actions import check_time_limit
from .backend import DreamBackend, check_num_envs

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


# ---------------------------------------------------------------------------------------------- model
def onnxruntime_providers(device: str = "auto", providers: list[Any] | None = None) -> list[Any]:
    """Execution providers for ``device``: explicit ``providers`` win; ``"auto"``: CUDA when this
    onnxruntime has it, else CPU; ``"cpu"``; ``"cuda"`` / ``"cuda:N"`` (an error where CUDA is absent)."""
    import onnxruntime as ort

    if providers is not None:
        return list(providers)
    available = ort.get_available_providers()
    device = str(device)
    if device == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    if device == "cpu":
        return [CPU]
    if device == "cuda" or device.startswith("cuda:"):
        if CUDA not in available:
            raise ValueError(
                f"device {device!r} is unavailable: this onnxruntime has no {CUDA} (it has {available});"
                " install onnxruntime-gpu or use device='cpu'"
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return [(CUDA, {"device_id": index}), CPU]
    raise ValueError(
        f"device {device!r} is not known to the onnxruntime backend: use 'auto', 'cpu' or 'cuda[:N]'"
    )


class OrtModel:
    """A bundle as the onnxruntime backend sees it: ``config.json``, the start states as numpy arrays and
    the exported graphs (each loaded, checked against the bundle and its record, on first use).

    Args:
        model: a bundle directory (with exported graphs), a registered or pretrained name, a Hub repo
            id, or a loaded ``wmsim.Bundle`` saved in a directory.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` (see :func:`onnxruntime_providers`).
        providers: onnxruntime execution providers, overriding ``device``.
        onnx_dir: a folder written by ``wmsim export-onnx BUNDLE --out DIR`` (default: the graphs the
            bundle's ``config.json`` records).
        threads: onnxruntime's intra-op threads (default: onnxruntime's choice).
        task: the task of a multi-task bundle (required there; a name or its env id, resolved as the
            torch backend does): its graphs, real spaces, time limit and start states.
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str = "auto",
        providers: list[Any] | None = None,
        onnx_dir: str | os.PathLike | None = None,
        threads: int | None = None,
        task: str | None = None,
    ) -> None:
        self.path = resolve_model_dir(model)
        self.config = read_bundle_config(self.path)
        #: The index and name of the multi-task bundle's task these graphs are of, or None.
        self.task_index, entry = self._task_entry(task)
        self.task: str | None = str(entry["name"]) if entry is not None else None
        self.dims = ModelDims.from_config(self.config, self.path / CONFIG_FILE, self.task)
        self.specs = graph_specs(self.dims)
        self.record: OnnxRecord = find_record(self.path, self.config, onnx_dir, self.task)
        self.fix = (
            f"re-run `{EXPORT_HINT} {self.path}"
            + (f" --out {onnx_dir}`" if onnx_dir is not None else "`")
            + " to write graphs that match it"
        )
        self.subject = f"task {self.task!r} of this bundle" if self.task is not None else "this bundle"
        if onnx_dir is not None:
            self._check_source()
        self.providers = onnxruntime_providers(device, providers)
        self.threads = threads
        #: The JSON spaces of the dream: the bundle's, or the task's real ones.
        self.spaces: dict[str, Any] = entry["spaces"] if entry is not None else self.config["spaces"]
        self.observation_space = space_from_dict(self.spaces["observation"])
        self.action_space = space_from_dict(self.spaces["action"])
        env = entry["env"] if entry is not None else self.config.get("env", {})
        self.time_limit: int | None = env.get("time_limit") if isinstance(env, dict) else None
        self.bank = self._load_start_states()
        self._sessions: dict[str, Any] = {}

    def _task_entry(self, task: Any) -> tuple[int | None, dict[str, Any] | None]:
        """The index and ``config.json`` entry of ``task`` (None, None for a single-task bundle), resolved
        by :func:`~wmsim.bundle_format.task_index` as the torch backend resolves it."""
        where = self.path / CONFIG_FILE
        tasks = self.config.get("tasks", [])
        if not isinstance(tasks, list) or not all(
            isinstance(t, dict) and isinstance(t.get("spaces"), dict) and isinstance(t.get("env"), dict)
            for t in tasks
        ):
            raise BundleError(f"{where}: 'tasks' must be a list of task entries (name, env, spaces)")
        try:
            ids = [EnvSpec.from_dict(t["env"]).id for t in [self.config, *tasks]]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: an env description is invalid ({exc})") from exc
        names = [str(t.get("name")) for t in tasks]
        index = task_index(task, names, ids[1:], f"bundle {self.path}", ids[0])
        return index, (tasks[index] if index is not None else None)

    def _check_source(self) -> None:
        """Graphs exported to another folder must be those of this bundle's weights: compare the
        weights' SHA-256 in the record with the bundle's (its config's checksum, else the file's)."""
        recorded = self.record.data.get("source", {}).get(WEIGHTS_FILE)
        weights = self.path / WEIGHTS_FILE
        current = self.config.get("checksums", {}).get(WEIGHTS_FILE)
        if current is None and weights.is_file():
            current = file_sha256(weights)
        if recorded and current and current != recorded:
            raise OnnxGraphError(
                f"{self.record.source} records graphs of other weights than {weights} (the bundle changed"
                f" after the export): {self.fix}"
            )

    def _load_start_states(self) -> np.ndarray:
        """The bank of start states as features ``(N, F)`` float32."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        file = self.path / START_STATES_FILE
        if not file.is_file():
            raise BundleError(f"{file} is missing: the bundle is incomplete (re-download or re-export it)")
        try:
            tensors = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise BundleError(
                f"{file} is not a readable safetensors file ({exc}): the bundle is corrupt"
            ) from exc
        expected = self.config.get("checksums", {}).get(START_STATES_FILE)
        if expected is not None and file_sha256(file) != expected:
            raise BundleError(
                f"{file} does not match the SHA-256 recorded in config.json: the file is corrupt or was"
                " changed after saving; download or export the bundle again"
            )
        d = self.dims
        deter, stoch, task = tensors.get("deter"), tensors.get("stoch"), tensors.get("task")
        if (
            deter is None
            or stoch is None
            or deter.ndim != 2
            or deter.shape[1] != d.deter
            or stoch.shape != (deter.shape[0], d.stoch)
            or deter.dtype != np.float32
            or stoch.dtype != np.int64
        ):
            raise BundleError(
                f"{file} does not match its config.json: expected deter float32 (N, {d.deter}) and stoch"
                f" int64 (N, {d.stoch}); re-export the bundle"
            )
        if not np.isfinite(deter).all():
            raise nonfinite_error(file, ["deter"])
        if len(stoch) and (stoch.min() < 0 or stoch.max() >= d.classes):
            raise BundleError(f"{file}: stoch class indices outside [0, classes)")
        if self.task_index is not None:  # the bank of one task: the rows of its index
            if task is None or task.shape != (len(deter),) or task.dtype != np.int64:
                raise BundleError(
                    f"{file} does not match its config.json: a multi-task bundle's start states need a"
                    " task tensor int64 (N,); re-export the bundle"
                )
            rows = task == self.task_index
            deter, stoch = deter[rows], stoch[rows]
        one_hot = np.eye(d.classes, dtype=np.float32)[stoch].reshape(len(stoch), -1)
        return np.concatenate([deter, one_hot], 1).astype(np.float32)

    def has_graph(self, name: str) -> bool:
        return self.record.has(name)

    def session(self, name: str) -> Any:
        """The onnxruntime session of graph ``name``, checked against the bundle (inputs, outputs, dtypes,
        shapes) and against the record (sha256). Errors name the file and the fix."""
        if name in self._sessions:
            return self._sessions[name]
        import onnxruntime as ort

        spec: GraphSpec = self.specs[name]
        if not self.record.has(name):
            policy = self.config.get("policy")
            learned = policy.get("task") if isinstance(policy, dict) else None
            why = (
                f"the bundle's policy learned task {learned!r}, whose graphs hold it"
                if name == "policy" and self.task is not None and learned not in (None, self.task)
                else "the bundle had no policy when it was exported (or --no-policy was given)"
                if name == "policy"
                else "the export is incomplete"
            )
            of = f" of task {self.task!r}" if self.task is not None else ""
            raise OnnxGraphError(f"{self.record.source} records no {name} graph{of} ({why}): {self.fix}")
        file = self.record.path(name)
        if not file.is_file():
            raise OnnxGraphError(f"{file} is missing: {self.fix}")
        data = file.read_bytes()
        options = ort.SessionOptions()
        if self.threads is not None:
            options.intra_op_num_threads = int(self.threads)
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(data, options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise OnnxGraphError(f"{file} is not a graph onnxruntime can load ({exc}): {self.fix}") from exc

        def describe(values: list[Any]) -> list[tuple[str, str, list[Any]]]:
            return [(v.name, v.type, list(v.shape)) for v in values]

        found = describe(session.get_inputs()), describe(session.get_outputs())
        check_io(file, *found, spec, self.fix, self.subject)
        recorded = self.record.graphs[name].get("sha256")
        if hashlib.sha256(data).hexdigest() != recorded:
            raise OnnxGraphError(
                f"{file} is not the graph recorded in {self.record.source} (its sha256 differs): it was"
                f" replaced or edited after the export (a graph of another bundle?); {self.fix}"
            )
        self._sessions[name] = session
        return session

    def run(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session(name).run(None, feeds)  # type: ignore[no-any-return]

    def action_vectors(self, action: np.ndarray) -> np.ndarray:
        """Validated actions -> the model's action vectors ``(B, A)`` float32 (one-hot when discrete)."""
        if self.dims.discrete:
            return np.eye(self.dims.action_size, dtype=np.float32)[action]
        return np.ascontiguousarray(action, dtype=np.float32)

    def noise(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        return rng.random((batch, self.dims.stoch, self.dims.classes), dtype=np.float32)

    def posterior(
        self,
        feat: np.ndarray,
        action: np.ndarray,
        is_first: np.ndarray,
        obs: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Posterior features of real observations ``obs (B, *obs_shape)``."""
        obs_dtype = np.uint8 if self.dims.image else np.float32
        feeds = {
            "feat": np.ascontiguousarray(feat, np.float32),
            "action": np.ascontiguousarray(action, np.float32),
            "is_first": np.ascontiguousarray(is_first, np.bool_),
            "obs": np.ascontiguousarray(obs, obs_dtype),
            "noise": self.noise(rng, len(feat)),
        }
        return self.run("posterior", feeds)[0]


# ---------------------------------------------------------------------------------------------- backend
class OrtSimulator(DreamBackend):
    """``num_envs`` dreams of a world model on onnxruntime (see the module docstring).

    Takes the keyword arguments of the torch backend (``device``: ``"auto"`` picks CUDA when this
    onnxruntime has it; ``dtype``: only ``"float32"``, the graphs' precision), plus ``providers``
    (onnxruntime execution providers, overriding ``device``), ``onnx_dir`` (graphs exported with
    ``--out``) and ``threads`` (onnxruntime's intra-op threads). ``task=`` picks the task of a
    multi-task bundle (required there), as on torch: the dream runs that task's graphs and speaks its
    real spaces.
    """

    name = "onnxruntime"
    xp = np

    def __init__(
        self,
        model: Any,
        num_envs: int,
        *,
        device: str = "auto",
        dtype: str = "float32",
        time_limit: int | None = None,
        termination: str = "threshold",
        autoreset: str = "next_step",
        seed: int | None = None,
        providers: list[Any] | None = None,
        onnx_dir: str | os.PathLike | None = None,
        threads: int | None = None,
        task: str | None = None,
    ) -> None:
        num_envs = check_num_envs(num_envs)
        check_time_limit(time_limit)
        if dtype != "float32":
            raise ValueError(
                f"dtype={dtype!r}: the onnxruntime backend runs the exported float32 graphs; use"
                " dtype='float32' (or backend='torch' for bfloat16/float16)"
            )
        self.model = OrtModel(
            model, device=str(device), providers=providers, onnx_dir=onnx_dir, threads=threads, task=task
        )
        self.dims = self.model.dims
        self.spaces = self.model.spaces
        self.bank_size = len(self.model.bank)
        first = self.model.providers[0]
        self.device = "cuda" if (first[0] if isinstance(first, tuple) else first) == CUDA else "cpu"
        self.rng = np.random.default_rng(seed)
        self._feat = np.zeros((num_envs, self.dims.feat_size), np.float32)
        real = self.model.observation_space
        self._obs_bounds = (
            (real.low.astype(np.float32), real.high.astype(np.float32))
            if isinstance(real, gym.spaces.Box) and not self.dims.image
            else None
        )
        limit = time_limit if time_limit is not None else self.model.time_limit
        super().__init__(num_envs, time_limit=limit, termination=termination, autoreset=autoreset)

    @property
    def providers(self) -> list[str]:
        """The execution providers onnxruntime uses for the transition graph."""
        return list(self.model.session("transition").get_providers())

    def prepare(self, *, step: bool = False, decode: bool = False, posterior: bool = False) -> None:
        for name, needed in (("transition", step), ("decoder", decode), ("posterior", posterior)):
            if needed:
                self.model.session(name)

    # ------------------------------------------------------------------ state
    @property
    def feat(self) -> np.ndarray:
        return self._feat

    def decode(self, feat: np.ndarray | None = None) -> np.ndarray:
        feat = self._feat if feat is None else feat
        obs = self.model.run("decoder", {"feat": np.ascontiguousarray(feat, np.float32)})[0]
        if self._obs_bounds is not None:
            obs = np.clip(obs, *self._obs_bounds).astype(np.float32)
        return obs

    def posterior(
        self, obs: np.ndarray, feat: np.ndarray | None = None, action: np.ndarray | None = None
    ) -> np.ndarray:
        n, d = len(obs), self.dims
        if feat is None or action is None:
            feat = np.zeros((n, d.feat_size), np.float32)
            vectors = np.zeros((n, d.action_size), np.float32)
            is_first = np.ones(n, bool)
        else:
            vectors = self.model.action_vectors(action)
            is_first = np.zeros(n, bool)
        return self.model.posterior(feat, vectors, is_first, obs, self.rng)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def start_features(self) -> np.ndarray:
        return self.model.bank.copy()

    def from_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.array(array)

    # ------------------------------------------------------------------ primitives
    def _zeros(self, dtype: str) -> np.ndarray:
        return np.zeros(self.num_envs, np.int64 if dtype == "int64" else bool)

    def _uniform(self) -> np.ndarray:
        return self.rng.random(self.num_envs, dtype=np.float32)

    def _start(self, mask: np.ndarray, index: np.ndarray | None) -> None:
        rows = np.flatnonzero(mask)
        if len(rows):
            chosen = self.rng.integers(self.bank_size, size=len(rows)) if index is None else index[rows]
            feat = self._feat.copy()  # a new array: a caller may hold the old one (same-step final_feat)
            feat[rows] = self.model.bank[chosen]
            self._feat = feat

    def _set_feat(self, mask: np.ndarray, feat: np.ndarray) -> None:
        self._feat = np.where(mask[:, None], feat, self._feat).astype(np.float32)

    def _transition(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        next_feat, reward, cont = self.model.run(
            "transition",
            {
                "feat": self._feat,
                "action": self.model.action_vectors(action),
                "noise": self.model.noise(self.rng, self.num_envs),
            },
        )
        self._feat = next_feat
        return reward, cont


class OrtPolicy:
    """The bundle's exported policy (``policy.onnx``) on latent observations ``(B, F)``: returns actions
    of the env's action space, ``(B,)`` int64 or ``(B, A)`` float32. ``mode=True`` takes the most likely
    action (tanh of the mean for continuous actions); otherwise actions are sampled with ``seed``.
    ``task``: for a multi-task bundle, the task whose graphs hold the policy (default: the task its
    policy learned)."""

    def __init__(
        self,
        model: Any,
        *,
        device: str = "auto",
        providers: list[Any] | None = None,
        onnx_dir: str | os.PathLike | None = None,
        seed: int | None = None,
        task: str | None = None,
    ) -> None:
        if not isinstance(model, OrtModel) and task is None:
            policy = read_bundle_config(resolve_model_dir(model)).get("policy")
            task = policy.get("task") if isinstance(policy, dict) else None
        self.model = (
            model
            if isinstance(model, OrtModel)
            else OrtModel(model, device=device, providers=providers, onnx_dir=onnx_dir, task=task)
        )
        self.model.session("policy")
        self.rng = np.random.default_rng(seed)

    def __call__(self, feat: np.ndarray, mode: bool = True) -> np.ndarray:
        feat = np.ascontiguousarray(feat, np.float32)
        batch, dims = len(feat), self.model.dims
        if dims.discrete:
            noise = self.rng.random((batch, dims.action_size), dtype=np.float32)
        else:
            noise = self.rng.standard_normal((batch, dims.action_size), dtype=np.float32)
        action, most_likely = self.model.run("policy", {"feat": feat, "noise": noise})
        chosen = most_likely if mode else action
        space = self.model.action_space
        if isinstance(space, gym.spaces.Discrete):
            return (chosen + int(space.start)).astype(np.int64)
        assert isinstance(space, gym.spaces.Box)
        return np.clip(chosen, space.low, space.high).astype(np.float32)


__all__ = ["OrtModel", "OrtPolicy", "OrtSimulator", "onnxruntime_providers"]
