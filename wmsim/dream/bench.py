"""``wmsim bench dream``: dreamed steps/s against the number of envs, for latent and pixel observations,
next to the real env the model stands for, measured in one run, on the torch backend and (``backends``)
the onnxruntime backend.

Without a trained bundle the benchmark builds a randomly initialised model of the requested preset for
the real env's spaces (the step costs the same whatever the weights). The real env is timed through
its own fastest batched path: ale-py's native ``AtariVectorEnv`` for Atari, a loop of dm_control
envs for DMC, Gymnasium's ``SyncVectorEnv`` otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bundle import Bundle, encode_start_states
from ..config import model_preset
from ..devices import resolve_device
from ..envs import EnvSpec, describe_spaces, make_env
from ..world_model import IOSpec, WorldModel
from .backend import BACKENDS
from .simulator import DTYPES
from .vector_env import DreamVectorEnv


@dataclass
class BenchRow:
    system: str
    obs_mode: str
    num_envs: int
    dtype: str
    steps_per_s: float
    api: str
    state_bytes_per_env: int
    peak_device_bytes_per_env: int | None
    backend: str = "torch"


def random_bundle(env_id: str, preset: str, starts: int = 16, seed: int = 0) -> Bundle:
    """A bundle of a randomly initialised model of ``preset`` for the spaces of ``env_id``."""
    env = make_env(env_id, seed=seed)
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    torch.manual_seed(seed)
    model = WorldModel(model_preset(preset), io)
    first = np.stack([env.reset(seed=seed + i)[0] for i in range(starts)])
    states = encode_start_states(model, torch.as_tensor(first))
    spec = EnvSpec.from_id(env_id)
    bundle = Bundle(model, spec, describe_spaces(env), states)
    env.close()
    return bundle


def _time(step: Any, min_seconds: float, max_iters: int = 10_000) -> float:
    step()  # warm-up
    iters, start = 0, time.perf_counter()
    while True:
        step()
        iters += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or iters >= max_iters:
            return iters / elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_dream_row(
    bundle: Bundle,
    num_envs: int,
    obs_mode: str,
    device: torch.device,
    dtype: str,
    api: str,
    min_seconds: float,
) -> BenchRow:
    env = DreamVectorEnv(bundle, num_envs, device=device, obs_mode=obs_mode, dtype=dtype, seed=0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rng = np.random.default_rng(0)
    space = env.single_action_space
    if api == "numpy":
        env.reset(seed=0)
        if bundle.model.io.discrete:
            actions = rng.integers(0, int(space.n), (num_envs,))  # type: ignore[attr-defined]
        else:
            box: Any = space
            actions = rng.uniform(box.low, box.high, (num_envs, *box.shape)).astype(np.float32)

        def step() -> None:
            env.step(actions)

    else:
        env.reset_tensor(seed=0)
        if bundle.model.io.discrete:
            action_t = torch.randint(0, int(space.n), (num_envs,), device=device)  # type: ignore[attr-defined]
        else:
            action_t = torch.zeros(num_envs, *space.shape, device=device)  # type: ignore[misc]

        def step() -> None:
            env.step_tensor(action_t)
            _sync(device)

    rate = _time(step, min_seconds) * num_envs
    rssm = bundle.model.config.rssm
    itemsize = torch.finfo(DTYPES[dtype]).bits // 8
    state_bytes = (rssm.deter + rssm.stoch * rssm.classes) * itemsize + 8 + 1
    peak = None
    if device.type == "cuda":
        peak = int((torch.cuda.max_memory_allocated(device) - base) / num_envs)
    env.close()
    return BenchRow("dream", obs_mode, num_envs, dtype, rate, api, state_bytes, peak)


def onnx_bundle(bundle: Bundle, workdir: Path) -> tuple[Path, Path | None]:
    """A bundle directory with ONNX graphs for ``bundle``, and the ``onnx_dir`` to pass (None: the
    bundle's own record). A saved bundle that has graphs is used as it is; one without gets graphs in
    ``workdir`` (the bundle is not touched); an unsaved one is saved into ``workdir`` and exported."""
    from ..bundle import save_bundle
    from ..bundle_format import read_bundle_config
    from ..onnx_export import export_onnx
    from ..onnx_format import RECORD_KEY

    if bundle.path is not None:
        if RECORD_KEY in read_bundle_config(bundle.path):
            return bundle.path, None
        export_onnx(bundle.path, workdir / "onnx")
        return bundle.path, workdir / "onnx"
    path = save_bundle(
        workdir / "bundle", bundle.model, bundle.env_spec, bundle.spaces, bundle.start_states, card=False
    )
    export_onnx(path)
    return path, None


def bench_ort_row(
    bundle_dir: Path,
    onnx_dir: Path | None,
    num_envs: int,
    obs_mode: str,
    min_seconds: float,
    threads: int | None,
    device: str = "cpu",
) -> BenchRow:
    """One row of the onnxruntime backend (numpy API, float32 graphs)."""
    env = DreamVectorEnv(
        bundle_dir,
        num_envs,
        backend="onnxruntime",
        device=device,
        obs_mode=obs_mode,
        seed=0,
        onnx_dir=onnx_dir,
        threads=threads,
    )
    sim: Any = env.sim
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    space: Any = env.single_action_space
    if sim.dims.discrete:
        actions = rng.integers(0, int(space.n), (num_envs,))
    else:
        actions = rng.uniform(space.low, space.high, (num_envs, *space.shape)).astype(np.float32)
    rate = _time(lambda: env.step(actions), min_seconds) * num_envs
    dims = sim.dims
    state_bytes = dims.feat_size * 4 + 8 + 1
    system = f"dream ({', '.join(sim.providers)})"
    env.close()
    return BenchRow(system, obs_mode, num_envs, "float32", rate, "numpy", state_bytes, None, "onnxruntime")


def bench_real(env_id: str, num_envs: int, min_seconds: float) -> BenchRow:
    """The real env's own batched stepping rate (agent steps/s)."""
    spec = EnvSpec.from_id(env_id)
    if spec.suite == "atari":
        from ale_py.vector_env import AtariVectorEnv

        game = re.sub(r"(?<!^)(?=[A-Z])", "_", spec.name).lower()  # MsPacman -> ms_pacman
        env: Any = AtariVectorEnv(
            game=game,
            num_envs=num_envs,
            img_height=spec.size[0],
            img_width=spec.size[1],
            grayscale=spec.grayscale,
            stack_num=1,
            frameskip=spec.action_repeat,
            repeat_action_probability=spec.sticky_actions,
            noop_max=spec.noop_max,
        )
        system = f"ale-py AtariVectorEnv x{num_envs}"
    else:
        import gymnasium as gym

        env = gym.vector.SyncVectorEnv([lambda: make_env(spec) for _ in range(num_envs)])
        system = f"{spec.suite} SyncVectorEnv x{num_envs}"
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = env.action_space.sample()
    rate = _time(lambda: env.step(actions), min_seconds) * num_envs
    env.close()
    return BenchRow(system, "real", num_envs, "-", rate, "numpy", 0, None)


def run_bench_dream(
    env_id: str = "atari/Pong",
    preset: str = "atari",
    model: Bundle | None = None,
    num_envs: tuple[int, ...] = (1, 16, 256, 4096, 65536),
    obs_modes: tuple[str, ...] = ("latent", "pixels"),
    device: str = "auto",
    dtypes: tuple[str, ...] = ("float32",),
    apis: tuple[str, ...] = ("numpy",),
    min_seconds: float = 1.0,
    max_pixel_envs: int | None = None,
    real_envs: int = 2,
    backends: tuple[str, ...] = ("torch",),
    ort_threads: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-ready dict with the rows and the dream/real ratios.

    ``backends``: ``"torch"`` (every dtype and api asked for) and/or ``"onnxruntime"`` (float32 graphs,
    numpy API; exported to a temporary folder unless the bundle has graphs). ``ort_threads``:
    onnxruntime's intra-op threads, default torch's thread count so both use the same cores."""
    import tempfile

    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"backends {sorted(unknown)}: choose from {BACKENDS}")
    dev = resolve_device(device)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    bundle = model if model is not None else random_bundle(env_id, preset)
    rows: list[BenchRow] = []
    real = bench_real(env_id, real_envs, min_seconds) if real_envs else None
    if real is not None:
        rows.append(real)
    if max_pixel_envs is None:
        max_pixel_envs = 65536 if dev.type == "cuda" else 1024
    threads = ort_threads if ort_threads is not None else torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="wmsim-bench-onnx-") as workdir:
        ort_source = onnx_bundle(bundle, Path(workdir)) if "onnxruntime" in backends else None
        for mode in obs_modes:
            for n in num_envs:
                if mode != "latent" and n > max_pixel_envs:
                    continue
                if "torch" in backends:
                    for dtype in dtypes:
                        for api in apis:
                            rows.append(bench_dream_row(bundle, n, mode, dev, dtype, api, min_seconds))
                if ort_source is not None:
                    rows.append(
                        bench_ort_row(
                            *ort_source,
                            n,
                            mode,
                            min_seconds,
                            threads,
                            "cpu" if dev.type == "cpu" else "auto",
                        )
                    )
    result: dict[str, Any] = {
        "env": env_id,
        "preset": preset if model is None else "bundle",
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": [row.__dict__ for row in rows],
    }
    if load_start is not None:
        # other processes on the machine slow every row down (torch's OpenMP threads most)
        result["load_average_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    if "onnxruntime" in backends:
        import onnxruntime

        result["onnxruntime"] = onnxruntime.__version__
        result["ort_threads"] = threads
    if real is not None:
        for row in result["rows"]:
            row["vs_real"] = row["steps_per_s"] / real.steps_per_s
    return result


def format_markdown(result: dict[str, Any]) -> str:
    """The rows as a markdown table."""
    ort = (
        f", onnxruntime {result['onnxruntime']} with {result['ort_threads']} threads"
        if "onnxruntime" in result
        else ""
    )
    load = result.get("load_average_1min")
    busy = f"; 1-min load average {load['start']:.1f} -> {load['end']:.1f}" if load else ""
    lines = [
        f"Dream benchmark: {result['env']} ({result['preset']}) on {result['device']}"
        f" ({result['device_name']}, {result['threads']} threads, torch {result['torch']}{ort}{busy})",
        "",
        "| system | backend | obs | envs | dtype | api | steps/s | x real | state bytes/env"
        " | peak bytes/env |",
        "|---|---|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        peak = "-" if r["peak_device_bytes_per_env"] is None else f"{r['peak_device_bytes_per_env']:,}"
        backend = "-" if r["obs_mode"] == "real" else r.get("backend", "torch")
        lines.append(
            f"| {r['system']} | {backend} | {r['obs_mode']} | {r['num_envs']:,} | {r['dtype']} | {r['api']} |"
            f" {r['steps_per_s']:,.0f} | {r.get('vs_real', float('nan')):.2f} |"
            f" {r['state_bytes_per_env']:,} | {peak} |"
        )
    comparison = backend_comparison(result)
    if comparison:
        lines += [
            "",
            "onnxruntime vs torch, both float32 through the numpy API:",
            "",
            "| obs | envs | torch steps/s | onnxruntime steps/s | onnxruntime / torch |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {c['obs_mode']} | {c['num_envs']:,} | {c['torch']:,.0f} | {c['onnxruntime']:,.0f} |"
            f" {c['ratio']:.2f} |"
            for c in comparison
        ]
    return "\n".join(lines)


def backend_comparison(result: dict[str, Any]) -> list[dict[str, Any]]:
    """onnxruntime's rate over torch's (float32, numpy API) for each observation mode and batch size
    that both backends ran."""
    rows = [
        r
        for r in result["rows"]
        if r["obs_mode"] != "real" and r["dtype"] == "float32" and r["api"] == "numpy"
    ]
    torch_rates = {
        (r["obs_mode"], r["num_envs"]): r["steps_per_s"] for r in rows if r.get("backend", "torch") == "torch"
    }
    out = []
    for r in rows:
        key = (r["obs_mode"], r["num_envs"])
        if r.get("backend") == "onnxruntime" and key in torch_rates:
            out.append(
                {
                    "obs_mode": key[0],
                    "num_envs": key[1],
                    "torch": torch_rates[key],
                    "onnxruntime": r["steps_per_s"],
                    "ratio": r["steps_per_s"] / torch_rates[key],
                }
            )
    return out


def write_results(result: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    path.write_text(json.dumps(result, indent=2))
    md = path.with_suffix(".md")
    md.write_text(format_markdown(result) + "\n")
    return path, md
