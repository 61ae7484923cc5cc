"""ONNX export and the onnxruntime dream backend: the graphs' parity with torch on the same noise, the
export's record, the torch-free path in a subprocess, and graphs that do not fit. The dream contract
itself runs on both backends in test_dream_contract.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnx
import pytest
import torch

import wmsim
from wmsim.bundle import Bundle, BundleError, load_bundle, save_bundle
from wmsim.dream import DreamVectorEnv, LatentObservation
from wmsim.dream.ort import OrtModel
from wmsim.envs import make_env
from wmsim.onnx_export import export_onnx
from wmsim.onnx_format import RECORD_FILE, OnnxGraphError
from wmsim.rssm import State

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*Box observation space (minimum|maximum) value.*",
    "ignore:.*Not able to test alternative render modes.*",
    "ignore:.*we recommend using a symmetric and normalized space.*",
)
ROOT = Path(__file__).resolve().parents[2]


def ort_dream(model: object, num_envs: int = 1, **kwargs: object) -> DreamVectorEnv:
    """A dream on the onnxruntime backend."""
    return DreamVectorEnv(model, num_envs, backend="onnxruntime", **kwargs)  # type: ignore[arg-type]


def _copy(bundle: Bundle, folder: Path) -> Path:
    assert bundle.path is not None
    shutil.copytree(bundle.path, folder)
    return folder


def export_onnx_copy(bundle: Bundle, folder: Path) -> Path:
    path = _copy(bundle, folder)
    export_onnx(path)
    return path


def _feat(state: State) -> np.ndarray:
    return state.feat.detach().numpy()


def _classes(feat: np.ndarray, bundle: Bundle) -> np.ndarray:
    rssm = bundle.model.config.rssm
    return feat[:, rssm.deter :].reshape(len(feat), rssm.stoch, rssm.classes).argmax(-1)


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("which", ["cartpole", "pendulum"])
def test_transition_graph_follows_torch_for_100_steps(
    which: str, exported: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    bundle: Bundle = request.getfixturevalue(f"{which}_bundle")
    model, rssm = bundle.model, bundle.model.config.rssm
    ort = OrtModel(exported[which], device="cpu")
    rng = np.random.default_rng(0)
    batch = 16
    index = rng.integers(len(bundle.start_states), size=batch)
    state = bundle.start_states.state(torch.as_tensor(index), rssm.classes)
    feat = ort.bank[index]
    np.testing.assert_array_equal(feat, _feat(state))  # the same start states
    space = ort.action_space
    terminations = 0
    for _ in range(100):
        if model.io.discrete:
            action = rng.integers(0, model.io.action_size, batch)
        else:
            assert isinstance(space, gym.spaces.Box)
            action = rng.uniform(space.low, space.high, (batch, *space.shape)).astype(np.float32)
        vectors = ort.action_vectors(action)
        noise = rng.random((batch, rssm.stoch, rssm.classes), dtype=np.float32)
        with torch.no_grad():
            state, reward, cont = model.step(state, torch.as_tensor(vectors), noise=torch.as_tensor(noise))
        feat, ort_reward, ort_cont = ort.run("transition", {"feat": feat, "action": vectors, "noise": noise})
        assert np.abs(feat - _feat(state)).max() <= 1e-4
        np.testing.assert_array_equal(_classes(feat, bundle), _classes(_feat(state), bundle))
        np.testing.assert_array_equal(ort_cont < 0.5, cont.numpy() < 0.5)  # termination flags
        assert np.abs(ort_reward - reward.numpy()).max() <= 1e-4
        assert np.abs(ort_cont - cont.numpy()).max() <= 1e-4
        terminations += int((ort_cont < 0.5).sum())
    assert 0 < terminations < 100 * batch  # both outcomes occurred, so the flags were really compared


@pytest.mark.parametrize("which", ["cartpole", "pong"])
def test_decoder_graph_matches_torch(
    which: str, exported: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    bundle: Bundle = request.getfixturevalue(f"{which}_bundle")
    ort = OrtModel(exported[which], device="cpu")
    feat = np.concatenate(
        [ort.bank, np.random.default_rng(1).uniform(-1, 1, ort.bank.shape).astype(np.float32)]
    )
    got = ort.run("decoder", {"feat": feat})[0]
    with torch.no_grad():
        want = bundle.model.obs_from_output(bundle.model.decode(torch.as_tensor(feat))).numpy()
    assert got.dtype == want.dtype and got.shape == want.shape == (len(feat), *bundle.model.io.obs_shape)
    if bundle.model.io.image:  # uint8 frames: at most one rounding step apart, nearly all equal
        difference = np.abs(got.astype(int) - want.astype(int))
        assert difference.max() <= 1 and (difference == 0).mean() > 0.999
    else:
        assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("which", ["cartpole", "pong"])
def test_posterior_graph_matches_torch(
    which: str, exported: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    bundle: Bundle = request.getfixturevalue(f"{which}_bundle")
    model, rssm = bundle.model, bundle.model.config.rssm
    ort = OrtModel(exported[which], device="cpu")
    rng = np.random.default_rng(2)
    batch = 12
    index = rng.integers(len(bundle.start_states), size=batch)
    prev = bundle.start_states.state(torch.as_tensor(index), rssm.classes)
    action = ort.action_vectors(
        rng.integers(0, model.io.action_size, batch)
        if model.io.discrete
        else rng.uniform(-1, 1, (batch, model.io.action_size)).astype(np.float32)
    )
    is_first = np.arange(batch) % 3 == 0
    obs = bundle.start_states.obs[torch.as_tensor(rng.integers(len(bundle.start_states), size=batch))].numpy()
    noise = rng.random((batch, rssm.stoch, rssm.classes), dtype=np.float32)
    got = ort.run(
        "posterior",
        {"feat": _feat(prev), "action": action, "is_first": is_first, "obs": obs, "noise": noise},
    )[0]
    with torch.no_grad():
        post, _ = model.rssm.obs_step(
            prev,
            torch.as_tensor(action),
            model.encode(torch.as_tensor(obs)),
            torch.as_tensor(is_first),
            noise=(torch.rand(batch, rssm.stoch, rssm.classes), torch.as_tensor(noise)),
        )
    assert np.abs(got - _feat(post)).max() <= 1e-4
    np.testing.assert_array_equal(_classes(got, bundle), _classes(_feat(post), bundle))


def test_the_posterior_filter_agrees_across_backends(
    exported: dict[str, Path], cartpole_bundle: Bundle
) -> None:
    spec = cartpole_bundle.env_spec
    ort_latent, _ = LatentObservation(
        make_env(spec), exported["cartpole"], backend="onnxruntime", seed=0
    ).reset(seed=5)
    torch_latent, _ = LatentObservation(make_env(spec), cartpole_bundle, seed=0).reset(seed=5)
    d = cartpole_bundle.model.config.rssm.deter
    np.testing.assert_allclose(ort_latent[:d], torch_latent[:d], atol=1e-4)  # the same posterior deter


def test_onnxruntime_bench_rows(exported: dict[str, Path]) -> None:
    from wmsim.dream.bench import format_markdown, run_bench_dream

    bundle = load_bundle(exported["cartpole"])
    result = run_bench_dream(
        model=bundle,
        env_id="CartPole-v1",
        num_envs=(1, 4),
        obs_modes=("latent",),
        device="cpu",
        min_seconds=0.01,
        real_envs=0,
        backends=("torch", "onnxruntime"),
    )
    assert [(r["backend"], r["num_envs"]) for r in result["rows"]] == [
        ("torch", 1),
        ("onnxruntime", 1),
        ("torch", 4),
        ("onnxruntime", 4),
    ]
    assert all(r["steps_per_s"] > 0 for r in result["rows"]) and "onnxruntime" in format_markdown(result)


# ---------------------------------------------------------------------------------------------- torch-free
def test_the_onnxruntime_backend_runs_where_torch_cannot_be_imported(exported: dict[str, Path]) -> None:
    code = f"""
import sys

class BlockTorch:
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            BlockTorch.attempts.append(name)
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, BlockTorch())
import warnings
warnings.simplefilter("ignore")
import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
import wmsim

env_id = wmsim.register_dream("TorchFree", {str(exported["cartpole"])!r}, backend="onnxruntime")
for mode in ("latent", "decoded", "dict"):
    check_env(gym.make(env_id, obs_mode=mode).unwrapped, skip_render_check=True)
vec = gym.make_vec(env_id, num_envs=8, seed=0, autoreset="same_step", time_limit=3, obs_mode="dict")
assert vec.backend == "onnxruntime"
obs, _ = vec.reset(seed=0)
ended = 0
for _ in range(7):
    obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
    ended += int(truncated.sum())
assert obs["latent"].shape == (8, 48) and ended > 0 and "final_obs" in info
attempts = list(BlockTorch.attempts)
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch got imported"
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("torch was importable")
print("torch-free OK", type(vec).__name__, attempts)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch-free OK DreamVectorEnv []" in result.stdout  # nothing even tried to import torch


# ---------------------------------------------------------------------------------------------- records
def test_export_records_the_graphs_in_config_json(exported: dict[str, Path], cartpole_bundle: Bundle) -> None:
    path = exported["cartpole"]
    config = json.loads((path / "config.json").read_text())
    record = config["onnx"]
    assert record["opset"] == 17 and set(record["graphs"]) == {"transition", "posterior", "decoder"}
    transition = record["graphs"]["transition"]
    assert transition["file"] == "onnx/transition.onnx"
    assert [(t["name"], t["shape"]) for t in transition["inputs"]] == [
        ("feat", ["batch", 48]),
        ("action", ["batch", 2]),
        ("noise", ["batch", 4, 4]),
    ]
    assert [t["name"] for t in transition["outputs"]] == ["next_feat", "reward", "cont"]
    for entry in record["graphs"].values():
        onnx.checker.check_model(str(path / entry["file"]), full_check=True)
        proto = onnx.load(str(path / entry["file"]))
        assert proto.opset_import[0].version == 17
        assert entry["max_abs_error"] <= 1e-4
    assert record["source"]["model.safetensors"] == config["checksums"]["model.safetensors"]
    reloaded = load_bundle(path)  # the strict loader still reads the bundle
    assert reloaded.model.config == cartpole_bundle.model.config
    assert oct((path / "config.json").stat().st_mode & 0o777) == "0o644"


def test_export_to_another_folder_leaves_the_bundle_alone(tmp_path: Path, cartpole_bundle: Bundle) -> None:
    path = _copy(cartpole_bundle, tmp_path / "bundle")
    before = (path / "config.json").read_bytes()
    export_onnx(path, tmp_path / "graphs")
    assert (path / "config.json").read_bytes() == before
    assert (tmp_path / "graphs" / RECORD_FILE).is_file()
    with pytest.raises(OnnxGraphError, match=f"no ONNX graphs .*run `wmsim export-onnx {path}`"):
        ort_dream(path)
    vec = ort_dream(path, 2, onnx_dir=tmp_path / "graphs", seed=0)
    vec.reset(seed=0)
    vec.step(np.array([0, 1]))
    with pytest.raises(OnnxGraphError, match=r"onnx\.json is missing.*--out"):
        ort_dream(path, onnx_dir=tmp_path / "nothing")
    # the bundle's weights change after the export: the folder's graphs are refused
    bundle = load_bundle(path)
    with torch.no_grad():
        bundle.model.reward_head[0].weight.add_(1.0)
    save_bundle(path, bundle.model, bundle.env_spec, bundle.spaces, bundle.start_states, card=False)
    with pytest.raises(OnnxGraphError, match=r"other weights .* re-run `wmsim export-onnx"):
        ort_dream(path, onnx_dir=tmp_path / "graphs")


# ---------------------------------------------------------------------------------------------- bad input


def test_devices_and_unsaved_bundles_get_clear_errors(
    exported: dict[str, Path], cartpole_bundle: Bundle
) -> None:
    import dataclasses

    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ValueError, match=r"device .cuda. is unavailable.*onnxruntime-gpu"):
            ort_dream(exported["cartpole"], device="cuda")
    with pytest.raises(ValueError, match=r"never saved, so it has no directory: save it with"):
        ort_dream(dataclasses.replace(cartpole_bundle, path=None))
    loaded = ort_dream(load_bundle(exported["cartpole"]))  # a loaded bundle runs from its directory
    assert loaded.sim.model.path == exported["cartpole"]  # type: ignore[attr-defined]


def test_a_bundle_without_graphs_says_how_to_export_them(tmp_path: Path, cartpole_bundle: Bundle) -> None:
    path = _copy(cartpole_bundle, tmp_path / "bundle")
    with pytest.raises(OnnxGraphError, match=f"has no ONNX graphs.*run `wmsim export-onnx {path}`"):
        gym.make_vec(wmsim.register_dream("NotExported", str(path)), num_envs=2, backend="onnxruntime")


def test_exporting_an_incomplete_bundle_names_the_missing_file(
    tmp_path: Path, cartpole_bundle: Bundle
) -> None:
    path = _copy(cartpole_bundle, tmp_path / "bundle")
    (path / "model.safetensors").unlink()
    with pytest.raises(BundleError, match=r"cannot export .*/model\.safetensors is missing.*re-download"):
        export_onnx(path)
    with pytest.raises(BundleError, match="no bundle directory"):
        export_onnx(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="opset=13: use 17 or newer"):
        export_onnx(path, opset=13)


def test_graphs_of_another_bundle_are_refused(
    tmp_path: Path, exported: dict[str, Path], cartpole_bundle: Bundle
) -> None:
    path = export_onnx_copy(cartpole_bundle, tmp_path / "bundle")
    # a graph of another model (other action size) copied in
    shutil.copy(exported["pendulum"] / "onnx" / "transition.onnx", path / "onnx" / "transition.onnx")
    with pytest.raises(OnnxGraphError, match=r"transition\.onnx does not fit this bundle .*action") as error:
        ort_dream(path)
    assert f"re-run `wmsim export-onnx {path}`" in str(error.value)
    # same shapes, other weights: caught by the recorded SHA-256
    other = _copy(cartpole_bundle, tmp_path / "other")
    bundle = load_bundle(other)
    with torch.no_grad():
        bundle.model.rssm.img_out[0].weight.mul_(2.0)
    save_bundle(other, bundle.model, bundle.env_spec, bundle.spaces, bundle.start_states, card=False)
    export_onnx(other)
    shutil.copy(other / "onnx" / "transition.onnx", path / "onnx" / "transition.onnx")
    with pytest.raises(OnnxGraphError, match=r"transition\.onnx is not the graph recorded .*sha256"):
        ort_dream(path)
    (path / "onnx" / "transition.onnx").unlink()
    with pytest.raises(OnnxGraphError, match=r"transition\.onnx is missing: re-run `wmsim export-onnx"):
        ort_dream(path)
    (path / "onnx" / "decoder.onnx").write_bytes(b"not a graph")
    shutil.copy(exported["cartpole"] / "onnx" / "transition.onnx", path / "onnx" / "transition.onnx")
    with pytest.raises(OnnxGraphError, match=r"decoder\.onnx is not a graph onnxruntime can load"):
        ort_dream(path, obs_mode="pixels")


@pytest.mark.parametrize("where", ["above", "absolute", "onnx_dir"])
def test_graph_files_outside_the_bundle_are_refused_before_opening(
    tmp_path: Path,
    exported: dict[str, Path],
    cartpole_bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """A record naming a file outside its folder is refused, even a valid graph of this very bundle, and
    with the same words whether that file exists or not (nothing outside is opened)."""
    path = _copy(cartpole_bundle, tmp_path / "bundle")
    outside = tmp_path / "elsewhere" / "transition.onnx"
    outside.parent.mkdir()
    shutil.copytree(exported["cartpole"] / "onnx", tmp_path / "graphs")
    config = json.loads((exported["cartpole"] / "config.json").read_text())
    record = config["onnx"]
    if where == "onnx_dir":
        record["graphs"]["transition"]["file"] = "../elsewhere/transition.onnx"
        (tmp_path / "graphs" / RECORD_FILE).write_text(json.dumps(record))
        kwargs: dict[str, object] = {"onnx_dir": tmp_path / "graphs"}
    else:
        record["graphs"]["transition"]["file"] = (
            "../elsewhere/transition.onnx" if where == "above" else str(outside)
        )
        mine = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**mine, "onnx": record}))
        kwargs = {}
    opened: list[str] = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: opened.append(str(self)) or real_read_bytes(self))
    messages = []
    for exists in (False, True):
        if exists:
            shutil.copy(exported["cartpole"] / "onnx" / "transition.onnx", outside)
        with pytest.raises(BundleError, match="which is not a path inside the bundle folder") as error:
            ort_dream(path, **kwargs)  # type: ignore[arg-type]
        messages.append(str(error.value))
    assert messages[0] == messages[1], "the error must not reveal whether the outside file exists"
    assert not any("elsewhere" in name for name in opened)


def test_bad_time_limits_and_observations_get_the_torch_backends_errors(
    exported: dict[str, Path], cartpole_bundle: Bundle
) -> None:
    for time_limit in (-1, 0):
        with pytest.raises(ValueError) as ort_error:
            ort_dream(exported["cartpole"], 2, time_limit=time_limit)
        with pytest.raises(ValueError) as torch_error:
            DreamVectorEnv(cartpole_bundle, 2, time_limit=time_limit)
        assert str(ort_error.value) == str(torch_error.value)
    real = np.full((2, 4), np.nan, np.float32)
    with pytest.raises(ValueError, match="contains NaN or inf") as ort_error:
        ort_dream(exported["cartpole"], 2, seed=0).reset(options={"observation": real})
    with pytest.raises(ValueError) as torch_error:
        DreamVectorEnv(cartpole_bundle, 2, seed=0).reset(options={"observation": real})
    assert str(ort_error.value) == str(torch_error.value)


# ---------------------------------------------------------------------------------------------- multi-task
#: The tasks of the tiny multi-task bundle (conftest's ``multitask_exported``): (name, obs, action).
TASKS = (("cartpole-swingup", 5, 1), ("reacher-easy", 6, 2))


def _edited_copy(path: Path, folder: Path, change: object) -> Path:
    """A copy of the bundle at ``path`` whose config.json's ONNX record ``change(record)`` edited."""
    copy = Path(shutil.copytree(path, folder))
    config = json.loads((copy / "config.json").read_text())
    change(config["onnx"])  # type: ignore[operator]
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_a_multi_task_export_records_one_set_of_graphs_per_task(multitask_exported: Path) -> None:
    from wmsim.onnx_export import format_record

    config = json.loads((multitask_exported / "config.json").read_text())
    record = config["onnx"]
    assert "graphs" not in record and list(record["tasks"]) == [name for name, _, _ in TASKS]
    assert record["source"]["model.safetensors"] == config["checksums"]["model.safetensors"]
    for name, obs, action in TASKS:
        graphs = record["tasks"][name]["graphs"]
        assert set(graphs) == {"transition", "posterior", "decoder"}
        transition = graphs["transition"]
        assert transition["file"] == f"onnx/{name}/transition.onnx"
        # the task's real sizes at the graph's edge (the model pads to 6 and 2 inside), no task input
        assert [(t["name"], t["shape"]) for t in transition["inputs"]] == [
            ("feat", ["batch", 48]),
            ("action", ["batch", action]),
            ("noise", ["batch", 4, 4]),
        ]
        assert graphs["posterior"]["inputs"][3]["shape"] == ["batch", obs]
        assert graphs["decoder"]["outputs"][0]["shape"] == ["batch", obs]
        for entry in graphs.values():
            onnx.checker.check_model(str(multitask_exported / entry["file"]), full_check=True)
            assert entry["max_abs_error"] <= 1e-4  # compared with torch at export
    text = format_record(record)
    assert "task reacher-easy:" in text and "onnx/reacher-easy/decoder.onnx" in text
    assert load_bundle(multitask_exported).task_names == [name for name, _, _ in TASKS]  # still loads


def test_a_multi_task_export_to_another_folder(tmp_path: Path, multitask_exported: Path) -> None:
    path = Path(shutil.copytree(multitask_exported, tmp_path / "bundle"))
    shutil.rmtree(path / "onnx")
    config = json.loads((path / "config.json").read_text())
    del config["onnx"]
    (path / "config.json").write_text(json.dumps(config))
    export_onnx(path, tmp_path / "graphs")
    assert json.loads((path / "config.json").read_text()) == config  # the bundle untouched
    record = json.loads((tmp_path / "graphs" / RECORD_FILE).read_text())
    assert record["tasks"]["reacher-easy"]["graphs"]["decoder"]["file"] == "reacher-easy/decoder.onnx"
    with pytest.raises(OnnxGraphError, match="has no ONNX graphs"):
        ort_dream(path, task="reacher-easy")
    vec = ort_dream(path, 3, task="reacher-easy", onnx_dir=tmp_path / "graphs", seed=0)
    assert vec.single_action_space.shape == (2,)
    vec.reset(seed=0)
    vec.step(np.zeros((3, 2), np.float32))


@pytest.mark.parametrize(("task", "obs", "action"), TASKS)
def test_each_tasks_graphs_follow_torch(task: str, obs: int, action: int, multitask_exported: Path) -> None:
    """From the same start states with the same actions and noise, a task's graphs give what the torch
    model bound to that task gives: features, rewards and continue probabilities over 50 steps, decoded
    observations and the posterior."""
    bound = load_bundle(multitask_exported).for_task(task)
    model, rssm = bound.model, bound.model.config.rssm
    ort = OrtModel(multitask_exported, device="cpu", task=f"dmc/{task}")  # the env id works too
    assert ort.task == task and ort.dims.obs_shape == (obs,) and ort.dims.action_size == action
    assert len(ort.bank) == len(bound.start_states) == 3  # the task's start states only
    rng = np.random.default_rng(0)
    batch = 8
    index = rng.integers(len(bound.start_states), size=batch)
    state = bound.start_states.state(torch.as_tensor(index), rssm.classes)
    feat = ort.bank[index]
    np.testing.assert_array_equal(feat, _feat(state))  # the same start states
    for _ in range(50):
        vectors = rng.uniform(-1, 1, (batch, action)).astype(np.float32)
        noise = rng.random((batch, rssm.stoch, rssm.classes), dtype=np.float32)
        with torch.no_grad():
            state, reward, cont = model.step(state, torch.as_tensor(vectors), noise=torch.as_tensor(noise))
        feat, ort_reward, ort_cont = ort.run("transition", {"feat": feat, "action": vectors, "noise": noise})
        assert np.abs(feat - _feat(state)).max() <= 1e-4
        np.testing.assert_array_equal(_classes(feat, bound), _classes(_feat(state), bound))
        assert np.abs(ort_reward - reward.numpy()).max() <= 1e-4
        assert np.abs(ort_cont - cont.numpy()).max() <= 1e-4
    decoded = ort.run("decoder", {"feat": feat})[0]
    with torch.no_grad():
        want = model.decode(torch.as_tensor(feat)).numpy()
    assert decoded.shape == want.shape == (batch, obs) and np.abs(decoded - want).max() <= 1e-4
    real = bound.start_states.obs[torch.as_tensor(index)].numpy()
    is_first = np.arange(batch) % 2 == 0
    noise = rng.random((batch, rssm.stoch, rssm.classes), dtype=np.float32)
    feeds = {"feat": _feat(state), "action": vectors, "is_first": is_first, "obs": real, "noise": noise}
    got = ort.run("posterior", feeds)[0]
    with torch.no_grad():
        post, _ = model.obs_step(
            state,
            torch.as_tensor(vectors),
            torch.as_tensor(real),
            torch.as_tensor(is_first),
            noise=(torch.rand(batch, rssm.stoch, rssm.classes), torch.as_tensor(noise)),
        )
    assert np.abs(got - _feat(post)).max() <= 1e-4
    np.testing.assert_array_equal(_classes(got, bound), _classes(_feat(post), bound))


@pytest.mark.parametrize(("task", "obs", "action"), TASKS)
def test_task_dreams_agree_across_backends_fed_the_same_noise(
    task: str, obs: int, action: int, multitask_exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the envs' API: the same start bank, spaces and time limit on both backends, and, fed the
    torch generator's latent noise, the same decoded observations and rewards step after step."""
    kwargs: dict[str, object] = {"task": task, "obs_mode": "dict", "autoreset": "disabled", "seed": 0}
    torch_vec = DreamVectorEnv(multitask_exported, 4, **kwargs)  # type: ignore[arg-type]
    ort_vec = ort_dream(multitask_exported, 4, **kwargs)
    np.testing.assert_array_equal(ort_vec.sim.start_features(), torch_vec.sim.start_features())
    assert ort_vec.time_limit == torch_vec.time_limit == 500  # the task env's
    assert ort_vec.single_action_space == torch_vec.single_action_space
    assert ort_vec.single_observation_space == torch_vec.single_observation_space
    assert ort_vec.single_observation_space["decoded"].shape == (obs,)  # type: ignore[index]
    first, _ = torch_vec.reset(seed=0)
    ort_vec.reset(seed=0, options={"reset_mask": np.ones(4, bool)})
    ort_vec.sim._set_feat(np.ones(4, bool), first["latent"])  # type: ignore[attr-defined]
    generator = torch_vec.sim.generator  # type: ignore[attr-defined]
    rng = np.random.default_rng(1)
    for _ in range(20):
        saved = generator.get_state()
        noise = torch.rand(4, 4, 4, generator=generator).numpy()  # what the torch step draws next
        generator.set_state(saved)
        monkeypatch.setattr(ort_vec.sim.model, "noise", lambda rng, batch, noise=noise: noise)
        actions = rng.uniform(-1, 1, (4, action)).astype(np.float32)
        want, want_reward, *_ = torch_vec.step(actions)
        got, got_reward, *_ = ort_vec.step(actions)
        assert np.abs(got["latent"] - want["latent"]).max() <= 1e-4
        assert np.abs(got["decoded"] - want["decoded"]).max() <= 1e-4
        assert np.abs(got_reward - want_reward).max() <= 1e-4


def test_task_arguments_are_resolved_as_on_torch(multitask_exported: Path, pendulum_bundle: Bundle) -> None:
    assert pendulum_bundle.path is not None
    cases = [
        (multitask_exported, None, "multi-task: pass task= one of cartpole-swingup, reacher-easy"),
        (multitask_exported, "walker-walk", "unknown task 'walker-walk'.*cartpole-swingup, reacher-easy"),
        (multitask_exported, 3, "task=3 must be a task name"),
        (pendulum_bundle.path, "walker-walk", r"single-task \(gym/Pendulum-v1\); leave task out"),
    ]
    for path, task, message in cases:
        with pytest.raises(ValueError, match=message) as ort_error:
            ort_dream(path, task=task)
        with pytest.raises(ValueError) as torch_error:
            DreamVectorEnv(path, task=task)
        assert str(ort_error.value) == str(torch_error.value)  # one resolution, the same words


def test_a_tasks_graph_file_outside_the_bundle_is_refused(tmp_path: Path, multitask_exported: Path) -> None:
    def outside(record: dict) -> None:
        record["tasks"]["reacher-easy"]["graphs"]["decoder"]["file"] = "../elsewhere/decoder.onnx"

    path = _edited_copy(multitask_exported, tmp_path / "bundle", outside)
    for task in ("reacher-easy", "cartpole-swingup"):  # refused whichever task is dreamed
        with pytest.raises(BundleError, match=re.escape("'../elsewhere/decoder.onnx', which is not a path")):
            ort_dream(path, task=task)
    with pytest.raises(BundleError, match="which is not a path inside"):
        load_bundle(path)  # the strict reader refuses the bundle on either backend
    # the same in a record written with --out
    graphs = Path(shutil.copytree(multitask_exported / "onnx", tmp_path / "graphs"))
    record = json.loads((multitask_exported / "config.json").read_text())["onnx"]
    outside(record)
    (graphs / RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(BundleError, match="which is not a path inside the bundle folder"):
        ort_dream(multitask_exported, task="cartpole-swingup", onnx_dir=graphs)


def test_records_that_do_not_fit_the_tasks_are_refused(
    tmp_path: Path, multitask_exported: Path, exported: dict[str, Path]
) -> None:
    def missing(record: dict) -> None:
        del record["tasks"]["reacher-easy"]

    path = _edited_copy(multitask_exported, tmp_path / "missing", missing)
    with pytest.raises(
        OnnxGraphError, match=r"no graphs of task\(s\) \['reacher-easy'\].*re-run `wmsim export-onnx"
    ):
        ort_dream(path, task="cartpole-swingup")  # an incomplete record is refused as a whole

    def extra(record: dict) -> None:
        record["tasks"]["walker-walk"] = record["tasks"]["reacher-easy"]

    path = _edited_copy(multitask_exported, tmp_path / "extra", extra)
    with pytest.raises(OnnxGraphError, match=r"graphs of task\(s\) \['walker-walk'\] that this bundle"):
        ort_dream(path, task="reacher-easy")
    single = json.loads((exported["pendulum"] / "config.json").read_text())["onnx"]
    multi = json.loads((multitask_exported / "config.json").read_text())["onnx"]

    def replaced(by: dict) -> object:
        return lambda record: (record.clear(), record.update(by))

    path = _edited_copy(multitask_exported, tmp_path / "single", replaced(single))
    with pytest.raises(OnnxGraphError, match=r"single-task, but this bundle is multi-task .*graphs per task"):
        ort_dream(path, task="reacher-easy")
    path = _edited_copy(exported["pendulum"], tmp_path / "pendulum", replaced(multi))
    with pytest.raises(OnnxGraphError, match=r"graphs per task \(cartpole-swingup, reacher-easy\), but this"):
        ort_dream(path)


def test_a_graph_that_does_not_fit_its_task_is_refused(tmp_path: Path, multitask_exported: Path) -> None:
    path = Path(shutil.copytree(multitask_exported, tmp_path / "bundle"))
    shutil.copy(path / "onnx" / "reacher-easy" / "transition.onnx", path / "onnx" / "cartpole-swingup")
    with pytest.raises(OnnxGraphError) as error:
        ort_dream(path, task="cartpole-swingup")
    message = str(error.value)
    assert "cartpole-swingup/transition.onnx does not fit task 'cartpole-swingup' of this bundle" in message
    assert "input action: tensor(float) ('batch', 2) where task 'cartpole-swingup' of this bundle" in message
    assert "implies action float32 (batch, 1)" in message and f"re-run `wmsim export-onnx {path}`" in message
    ort_dream(path, task="reacher-easy").reset(seed=0)  # the other task's graphs are untouched

    def swapped(record: dict) -> None:  # the record points a task at another task's graph
        decoder = record["tasks"]["cartpole-swingup"]["graphs"]["decoder"]
        decoder["file"] = "onnx/reacher-easy/decoder.onnx"

    path = _edited_copy(multitask_exported, tmp_path / "swapped", swapped)
    with pytest.raises(
        OnnxGraphError, match=r"reacher-easy/decoder\.onnx does not fit task 'cartpole-swingup'"
    ):
        ort_dream(path, task="cartpole-swingup", obs_mode="decoded")


MULTI_TASK_TORCH_FREE = """
import json, sys
import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
import wmsim

path = sys.argv[1]
out = {}
for task, obs, action in (("cartpole-swingup", 5, 1), ("dmc/reacher-easy", 6, 2)):
    env = gym.make("wmsim/Dream", model=path, task=task, backend="onnxruntime", obs_mode="decoded")
    check_env(env.unwrapped, skip_render_check=True)
    assert env.observation_space.shape == (obs,) and env.action_space.shape == (action,)
    vec = gym.make_vec("wmsim/Dream", num_envs=4, model=path, task=task, backend="onnxruntime", seed=0)
    vec.reset(seed=0)
    latent, reward, *_ = vec.step(vec.action_space.sample())
    out[task] = [list(latent.shape), float(reward.sum())]
try:
    gym.make("wmsim/Dream", model=path, backend="onnxruntime")
except ValueError as error:
    out["no task"] = str(error)
out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
print(json.dumps(out))
"""


@pytest.mark.parametrize("python", ["torch-blocked", ".venv-onnx"])
def test_task_dreams_run_without_torch(python: str, multitask_exported: Path, tmp_path: Path) -> None:
    """A multi-task bundle's task dreams on onnxruntime where torch cannot be imported (this Python with
    torch blocked) or is not installed (the ``wmsim[onnx]`` venv of tests/wmsim/test_install.py)."""
    if python == ".venv-onnx":
        interpreter = ROOT / ".venv-onnx" / "bin" / "python"
        if not interpreter.is_file():
            pytest.skip(f"no torch-free venv at {interpreter} (scripts/setup.sh builds it)")
        command = [str(interpreter), "-c", MULTI_TASK_TORCH_FREE]
    else:
        block = (
            "import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, Block())\n"
        )
        command = [sys.executable, "-c", block + MULTI_TASK_TORCH_FREE]
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": ""}
    done = subprocess.run(
        [*command, str(multitask_exported)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["cartpole-swingup"][0] == [4, 48] and report["dmc/reacher-easy"][0] == [4, 48]
    assert "multi-task: pass task= one of cartpole-swingup, reacher-easy" in report["no task"]
    assert report["modules"] == []
