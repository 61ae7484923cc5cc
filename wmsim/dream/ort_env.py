"""Dreams on onnxruntime: the dream environments without torch.

:class:`OrtDreamVectorEnv` and :class:`OrtDreamEnv` behave as :class:`~wmsim.dream.DreamVectorEnv` and
:class:`~wmsim.dream.DreamEnv` (same spaces, seeding rules, autoreset modes and metadata, time limit
and termination options, observation modes and ``rgb_array`` frames) but step the bundle's exported
ONNX graphs (``wmsim export-onnx BUNDLE_DIR``) with numpy arrays. Nothing here imports torch: numpy,
onnxruntime, gymnasium and ``safetensors.numpy`` are all it needs. Select it with
``gym.make(env_id, backend="onnxruntime")`` / ``gym.make_vec(env_id, num_envs, backend="onnxruntime")``.

Randomness (start-state draws, the categorical samples, sampled terminations) comes from one
``numpy.random.Generator`` per env, seeded by ``seed=`` and re-seeded by ``reset(seed=...)``: the same
seed and actions give the same trajectory. The streams differ from the torch backend's (torch's
generator draws other numbers), so the two backends agree in distribution, and exactly when fed the
same noise (see ``tests/wmsim/test_onnx.py``).

:class:`OrtLatentObservation` is :class:`~wmsim.dream.LatentObservation` on onnxruntime, and
:class:`OrtPolicy` plays a bundle's exported policy on latent observations.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from ..bundle_format import (
    START_STATES_FILE,
    WEIGHTS_FILE,
    BundleError,
    file_sha256,
    nonfinite_error,
    read_bundle_config,
)
from ..envs.spaces import space_from_dict
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
from .actions import check_actions, check_reset, check_time_limit
from .single import SingleDreamEnv

OBS_MODES = ("latent", "pixels", "dict")
TERMINATION_MODES = ("threshold", "sample")
AUTORESET_MODES = ("next_step", "same_step", "disabled")
_AUTORESET = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


# ---------------------------------------------------------------------------------------------- model
def resolve_bundle_dir(model: Any) -> Path:
    """The bundle directory of ``model``: a directory, a registered or pretrained name, a Hub repo id, or
    a loaded ``wmsim.Bundle`` that was saved to (or loaded from) a directory."""
    from .. import registry

    if model is None:
        raise ValueError(
            "model=None: pass model= a bundle directory (exported with `wmsim export-onnx BUNDLE_DIR`),"
            " a registered or pretrained name, or a Hub repo id"
        )
    if not isinstance(model, (str, os.PathLike)):
        directory = getattr(model, "path", None)
        if directory is None:
            raise ValueError(
                f"a {type(model).__name__} without a directory cannot run on onnxruntime: save it with"
                f" wmsim.save_bundle(...), export it with `{EXPORT_HINT} DIR`, and pass DIR"
            )
        return Path(directory)
    key = os.fspath(model)
    registered = getattr(registry, "_OBJECTS", {}).get(key)  # a Bundle handed to register_dream
    if registered is not None:
        return resolve_bundle_dir(registered)
    return registry.resolve_model_dir(key)


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
        model: see :func:`resolve_bundle_dir`.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` (see :func:`onnxruntime_providers`).
        providers: onnxruntime execution providers, overriding ``device``.
        onnx_dir: a folder written by ``wmsim export-onnx BUNDLE --out DIR`` (default: the graphs the
            bundle's ``config.json`` records).
        threads: onnxruntime's intra-op threads (default: onnxruntime's choice).
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str = "auto",
        providers: list[Any] | None = None,
        onnx_dir: str | os.PathLike | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = resolve_bundle_dir(model)
        self.config = read_bundle_config(self.path)
        self.dims = ModelDims.from_config(self.config, self.path)
        self.specs = graph_specs(self.dims)
        self.record: OnnxRecord = find_record(self.path, self.config, onnx_dir)
        self.fix = (
            f"re-run `{EXPORT_HINT} {self.path}"
            + (f" --out {onnx_dir}`" if onnx_dir is not None else "`")
            + " to write graphs that match it"
        )
        if onnx_dir is not None:
            self._check_source()
        self.providers = onnxruntime_providers(device, providers)
        self.threads = threads
        self.observation_space = space_from_dict(self.config["spaces"]["observation"])
        self.action_space = space_from_dict(self.config["spaces"]["action"])
        env = self.config.get("env", {})
        self.time_limit: int | None = env.get("time_limit") if isinstance(env, dict) else None
        self.bank = self._load_start_states()
        self._sessions: dict[str, Any] = {}

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
        deter, stoch = tensors.get("deter"), tensors.get("stoch")
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
            why = (
                "the bundle had no policy when it was exported (or --no-policy was given)"
                if name == "policy"
                else "the export is incomplete"
            )
            raise OnnxGraphError(f"{self.record.source} records no {name} graph ({why}): {self.fix}")
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

        check_io(file, describe(session.get_inputs()), describe(session.get_outputs()), spec, self.fix)
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


# ---------------------------------------------------------------------------------------------- checks
def latent_space(dims: ModelDims) -> gym.spaces.Box:
    """The ``latent`` observation: ``concat(deter, flat(one-hot stoch))`` float32 in [-1, 1]."""
    return gym.spaces.Box(-1.0, 1.0, (dims.feat_size,), np.float32)


def observation_space(model: OrtModel, obs_mode: str) -> gym.Space:
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode={obs_mode!r}: choose one of {OBS_MODES}")
    real = model.observation_space
    if tuple(real.shape or ()) != tuple(model.dims.obs_shape):
        raise ValueError(
            f"the bundle's observation space {real} does not match its model's observation shape"
            f" {model.dims.obs_shape}: the bundle is inconsistent; re-export it"
        )
    if obs_mode == "latent":
        return latent_space(model.dims)
    if obs_mode == "pixels":
        return real
    return gym.spaces.Dict({"latent": latent_space(model.dims), "pixels": real})


# ---------------------------------------------------------------------------------------------- envs
class OrtDreamVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` dreams of a world model on onnxruntime (see the module docstring).

    Takes the keyword arguments of :class:`~wmsim.dream.DreamVectorEnv` (``device``: ``"auto"`` picks
    CUDA when this onnxruntime has it; ``dtype``: only ``"float32"``, the graphs' precision), plus
    ``providers`` (onnxruntime execution providers, overriding ``device``), ``onnx_dir`` (graphs
    exported with ``--out``) and ``threads`` (onnxruntime's intra-op threads).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        model: Any,
        num_envs: int = 1,
        *,
        device: str = "auto",
        providers: list[Any] | None = None,
        onnx_dir: str | os.PathLike | None = None,
        threads: int | None = None,
        obs_mode: str = "latent",
        dtype: str = "float32",
        time_limit: int | None = None,
        termination: str = "threshold",
        autoreset: str = "next_step",
        render_mode: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be a positive integer")
        if dtype != "float32":
            raise ValueError(
                f"dtype={dtype!r}: the onnxruntime backend runs the exported float32 graphs; use"
                " dtype='float32' (or backend='torch' for bfloat16/float16)"
            )
        if termination not in TERMINATION_MODES:
            raise ValueError(f"termination={termination!r}: choose one of {TERMINATION_MODES}")
        if autoreset not in AUTORESET_MODES:
            raise ValueError(f"autoreset={autoreset!r}: choose one of {AUTORESET_MODES}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: dreams render 'rgb_array' frames (or None)")
        time_limit = check_time_limit(time_limit)
        self.model = OrtModel(
            model, device=str(device), providers=providers, onnx_dir=onnx_dir, threads=threads
        )
        if len(self.model.bank) == 0:
            raise ValueError("the bundle holds no start states: it cannot start a dream")
        self.obs_mode = obs_mode
        self.single_observation_space = observation_space(self.model, obs_mode)
        self.single_action_space = self.model.action_space
        self.num_envs = int(num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "autoreset_mode": _AUTORESET[autoreset]}
        self.termination = termination
        self.autoreset = autoreset
        limit = time_limit if time_limit is not None else self.model.time_limit
        self.time_limit: int | None = int(limit) if limit is not None else None
        self.spec = None
        self.rng = np.random.default_rng(seed)
        dims = self.model.dims
        self.feat = np.zeros((self.num_envs, dims.feat_size), np.float32)
        self.elapsed = np.zeros(self.num_envs, np.int64)
        self.needs_reset = np.zeros(self.num_envs, bool)
        real = self.model.observation_space
        self._obs_bounds = (
            (real.low.astype(np.float32), real.high.astype(np.float32))
            if isinstance(real, gym.spaces.Box) and not dims.image
            else None
        )
        # load the graphs this env needs now, so a missing or foreign graph is reported at construction
        self.model.session("transition")
        if obs_mode != "latent" or render_mode is not None:
            self.model.session("decoder")
        self._started = False

    @property
    def providers(self) -> list[str]:
        """The execution providers onnxruntime uses for the transition graph."""
        return list(self.model.session("transition").get_providers())

    # ------------------------------------------------------------------ state
    def _reset_where(self, mask: np.ndarray) -> None:
        count = int(mask.sum())
        if count:
            index = self.rng.integers(len(self.model.bank), size=count)
            self.feat[mask] = self.model.bank[index]
            self.elapsed[mask] = 0
            self.needs_reset[mask] = False

    def _reset_from_observation(self, obs: np.ndarray) -> None:
        n, dims = len(obs), self.model.dims
        self.feat = self.model.posterior(
            np.zeros((n, dims.feat_size), np.float32),
            np.zeros((n, dims.action_size), np.float32),
            np.ones(n, bool),
            obs,
            self.rng,
        )
        self.elapsed[:] = 0
        self.needs_reset[:] = False

    # ------------------------------------------------------------------ observations
    def decode(self, feat: np.ndarray | None = None) -> np.ndarray:
        """Decoded observations in the real env's format: uint8 ``(B, H, W, C)`` or float32 ``(B, D)``
        (clipped to the real observation space)."""
        feat = self.feat if feat is None else feat
        obs = self.model.run("decoder", {"feat": np.ascontiguousarray(feat, np.float32)})[0]
        if self._obs_bounds is not None:
            obs = np.clip(obs, *self._obs_bounds).astype(np.float32)
        return obs

    def observe(self, feat: np.ndarray | None = None) -> Any:
        feat = self.feat if feat is None else feat
        if self.obs_mode == "latent":
            return feat.copy()
        if self.obs_mode == "pixels":
            return self.decode(feat)
        return {"latent": feat.copy(), "pixels": self.decode(feat)}

    # ------------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``). ``options["observation"]``: real
        observations ``(num_envs, *obs_shape)`` to dream on from. ``seed``: an int (a list is reduced to
        its first element, as one generator drives the batch)."""
        seed, mask, real = check_reset(seed, options, self.num_envs, tuple(self.model.dims.obs_shape))
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self.action_space.seed(seed)
        self._reset_where(mask if mask is not None and self._started else np.ones(self.num_envs, bool))
        if real is not None:
            self._reset_from_observation(real)
        self._started = True
        return self.observe(), {}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        action = check_actions(actions, self.single_action_space, n)
        next_feat, reward, cont = self.model.run(
            "transition",
            {
                "feat": self.feat,
                "action": self.model.action_vectors(action),
                "noise": self.model.noise(self.rng, n),
            },
        )
        if self.termination == "sample":
            terminated = self.rng.random(n, dtype=np.float32) >= cont
        else:
            terminated = cont < 0.5
        elapsed = self.elapsed + 1
        limit = self.time_limit
        truncated = (elapsed >= limit) & ~terminated if limit else np.zeros(n, bool)
        self.feat, self.elapsed = next_feat, elapsed
        info: dict[str, Any] = {}
        if self.autoreset == "next_step":
            # Envs that ended on the previous step start afresh now; their action is ignored.
            resetting = self.needs_reset.copy()
            self._reset_where(resetting)
            reward = np.where(resetting, 0.0, reward)
            terminated &= ~resetting
            truncated &= ~resetting
            self.needs_reset = terminated | truncated
        elif self.autoreset == "same_step":
            done = terminated | truncated
            if done.any():
                final = self.observe(self.feat)
                self._reset_where(done)
                final_obs = np.empty(n, dtype=object)
                for i in np.flatnonzero(done):
                    final_obs[i] = (
                        {k: v[i] for k, v in final.items()} if isinstance(final, dict) else final[i]
                    )
                info["final_obs"] = final_obs
                info["_final_obs"] = done
        else:
            self.needs_reset = terminated | truncated
        return self.observe(), np.asarray(reward, np.float64), terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Decoded frames, one ``(H, W, 3)`` uint8 array per sub-env (``rgb_array``)."""
        if self.render_mode is None:
            return None
        decoded = self.decode()
        return tuple(frames_to_rgb(decoded) if self.model.dims.image else vector_frames(decoded))

    def close_extras(self, **kwargs: Any) -> None:
        self._started = False


class OrtDreamEnv(SingleDreamEnv):
    """One dreamed episode at a time on onnxruntime: an :class:`OrtDreamVectorEnv` of one sub-env
    without autoreset (what ``gym.make(env_id, backend="onnxruntime")`` returns). Takes the keyword
    arguments of :class:`OrtDreamVectorEnv`."""

    def __init__(self, model: Any, *, render_mode: str | None = None, **kwargs: Any) -> None:
        kwargs.pop("autoreset", None)
        vector = OrtDreamVectorEnv(model, 1, autoreset="disabled", render_mode=render_mode, **kwargs)
        super().__init__(vector, render_mode)


# ---------------------------------------------------------------------------------------------- helpers
class OrtLatentObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """:class:`~wmsim.dream.LatentObservation` on onnxruntime: a real env whose observations become the
    posterior latent features ``(F,)`` of ``model`` (the ``posterior`` graph; seeded by ``seed``)."""

    def __init__(
        self,
        env: gym.Env,
        model: Any,
        *,
        device: str = "auto",
        providers: list[Any] | None = None,
        onnx_dir: str | os.PathLike | None = None,
        seed: int | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, device=device, seed=seed)
        super().__init__(env)
        self.model = OrtModel(model, device=device, providers=providers, onnx_dir=onnx_dir)
        dims = self.model.dims
        if tuple(env.observation_space.shape or ()) != dims.obs_shape:
            raise ValueError(
                f"the real env's observation space {env.observation_space} does not match the model's"
                f" observations {dims.obs_shape}: wrap the env the bundle was trained on"
            )
        if isinstance(env.action_space, gym.spaces.Discrete) != dims.discrete:
            raise ValueError(
                f"the real env's action space {env.action_space} does not match the model's"
                f" ({'discrete' if dims.discrete else 'continuous'}) actions"
            )
        self.model.session("posterior")
        self.observation_space = latent_space(dims)
        self.rng = np.random.default_rng(seed if seed is not None else 0)
        self._feat = np.zeros((1, dims.feat_size), np.float32)

    def _filter(self, obs: Any, action: np.ndarray, is_first: bool) -> np.ndarray:
        self._feat = self.model.posterior(
            self._feat, action, np.array([is_first]), np.asarray(obs)[None], self.rng
        )
        return self._feat[0].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._feat = np.zeros_like(self._feat)
        return self._filter(obs, np.zeros((1, self.model.dims.action_size), np.float32), True), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.model.dims.discrete:
            space = self.env.action_space
            start = int(space.start) if isinstance(space, gym.spaces.Discrete) else 0
            vector = self.model.action_vectors(np.asarray(action, np.int64).reshape(1) - start)
        else:
            vector = np.asarray(action, np.float32).reshape(1, -1)
        return self._filter(obs, vector, False), reward, terminated, truncated, info


class OrtPolicy:
    """The bundle's exported policy (``policy.onnx``) on latent observations ``(B, F)``: returns actions
    of the env's action space, ``(B,)`` int64 or ``(B, A)`` float32. ``mode=True`` takes the most likely
    action (tanh of the mean for continuous actions); otherwise actions are sampled with ``seed``."""

    def __init__(
        self,
        model: Any,
        *,
        device: str = "auto",
        providers: list[Any] | None = None,
        onnx_dir: str | os.PathLike | None = None,
        seed: int | None = None,
    ) -> None:
        self.model = (
            model
            if isinstance(model, OrtModel)
            else OrtModel(model, device=device, providers=providers, onnx_dir=onnx_dir)
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


def frames_to_rgb(frames: np.ndarray) -> np.ndarray:
    """``(..., H, W, 1 or 3)`` uint8 -> ``(..., H, W, 3)`` uint8."""
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def vector_frames(states: np.ndarray, height: int = 64) -> np.ndarray:
    """A bar chart of each decoded state vector (one bar per dimension, blue on white, a black zero
    line), the frames the torch backend renders for models of vector observations."""
    n, dims = states.shape
    width = max(8 * dims, 64)
    frames = np.full((n, height, width, 3), 255, np.uint8)
    mid = height // 2
    scale = np.abs(states).max(axis=1, keepdims=True) + 1e-6
    bars = (states / scale * (mid - 2)).astype(int)  # (n, dims), positive bars point up
    rows = np.arange(height)[None, :, None]
    top = np.minimum(mid, mid - bars)[:, None, :]
    bottom = np.maximum(mid, mid - bars)[:, None, :]
    inside = (rows >= top) & (rows <= bottom)  # (n, height, dims)
    column = np.arange(width)
    slot = width // dims
    which = np.minimum(column // slot, dims - 1)
    in_bar = (column % slot >= 1) & (column % slot < slot - 1) & (column < dims * slot)
    painted = inside[:, :, which] & in_bar[None, None, :]
    frames[painted] = (40, 90, 200)
    frames[:, mid, :] = 0
    return frames


__all__ = [
    "OrtDreamEnv",
    "OrtDreamVectorEnv",
    "OrtLatentObservation",
    "OrtModel",
    "OrtPolicy",
    "check_actions",
    "onnxruntime_providers",
    "resolve_bundle_dir",
]
