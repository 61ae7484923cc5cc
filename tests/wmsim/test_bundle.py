"""The bundle format: every preset round-trips, half-precision storage, and hostile files are refused
with a message naming the file and the fix."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from wmsim.bundle import BundleError, encode_start_states, load_bundle, save_bundle
from wmsim.config import MODEL_PRESETS, model_preset
from wmsim.envs import EnvSpec
from wmsim.world_model import IOSpec, WorldModel

IMAGE_GRAY = IOSpec.from_spaces(gym.spaces.Box(0, 255, (64, 64, 1), np.uint8), gym.spaces.Discrete(6))
IMAGE_RGB = IOSpec.from_spaces(
    gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Box(-1, 1, (6,), np.float32)
)
VECTOR = IOSpec.from_spaces(gym.spaces.Box(-np.inf, np.inf, (5,), np.float32), gym.spaces.Discrete(3))
IO_FOR = {"atari": IMAGE_GRAY, "dmc_vision": IMAGE_RGB}
GRU = "rssm.gru.linear.weight"
SPACES = {"observation": {"type": "Box"}, "action": {"type": "Box"}}


def _save(directory: Path, preset: str = "tiny", **kwargs: object) -> tuple[WorldModel, Path]:
    torch.manual_seed(0)
    io = IO_FOR.get(preset, VECTOR)
    model = WorldModel(model_preset(preset), io)
    obs = torch.randint(0, 255, (3, *io.obs_shape), dtype=torch.uint8) if io.image else torch.randn(3, 5)
    starts = encode_start_states(model, obs)
    path = save_bundle(directory, model, EnvSpec.from_id("CartPole-v1"), SPACES, starts, {"k": 1}, **kwargs)
    return model, path


@pytest.mark.parametrize("preset", sorted(MODEL_PRESETS))
def test_every_preset_round_trips_bit_identically(tmp_path: Path, preset: str) -> None:
    model, path = _save(tmp_path / preset, preset)
    loaded = load_bundle(path)
    assert loaded.config == model.config and loaded.model.io == model.io
    saved, restored = model.state_dict(), loaded.model.state_dict()
    assert list(saved) == list(restored)
    for name in saved:
        assert saved[name].dtype == restored[name].dtype and torch.equal(saved[name], restored[name]), name
    assert (path / "README.md").is_file(), "save_bundle writes the model card"


@pytest.mark.parametrize(("storage", "rtol"), [("float16", 1e-3), ("bfloat16", 8e-3)])
def test_half_precision_storage_round_trips_within_its_precision(
    tmp_path: Path, storage: str, rtol: float
) -> None:
    model, full = _save(tmp_path / "full", "small")
    _, half = _save(tmp_path / "half", "small", weights_dtype=storage)
    stored = load_file(str(half / "model.safetensors"))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {getattr(torch, storage)}
    ratio = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55
    loaded = load_bundle(half)
    for name, value in model.state_dict().items():
        restored = loaded.model.state_dict()[name]
        assert restored.dtype == value.dtype, name  # computed in float32 again
        assert torch.allclose(restored, value, rtol=rtol, atol=1e-6 if storage == "float16" else 1e-30), name
    assert not torch.equal(loaded.model.state_dict()[GRU], model.state_dict()[GRU])


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = _save(tmp_path / "b")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bundle load reached the unpickler")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_bundle(path).model is not None


def _rewrite_weights(path: Path, change: object) -> None:
    tensors = load_file(str(path / "model.safetensors"))
    change(tensors)  # type: ignore[operator]
    save_file(tensors, str(path / "model.safetensors"))


def _edit_config(path: Path, change: object) -> None:
    config = json.loads((path / "config.json").read_text())
    change(config)  # type: ignore[operator]
    (path / "config.json").write_text(json.dumps(config))


HOSTILE = {
    "truncated": (
        lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:5000]),
        r"model\.safetensors is not a readable safetensors file",
    ),
    "flipped byte": (
        lambda p: (p / "model.safetensors").write_bytes(_flip((p / "model.safetensors").read_bytes())),
        r"model\.safetensors does not match the SHA-256",
    ),
    "wrong dtype": (
        lambda p: _rewrite_weights(p, lambda t: t.update({GRU: t[GRU].double()})),
        r"rssm\.gru\.linear\.weight: torch\.float64 .* where the config implies torch\.float32",
    ),
    "wrong shape": (
        lambda p: _rewrite_weights(p, lambda t: t.update({GRU: t[GRU][:, :-1].contiguous()})),
        r"rssm\.gru\.linear\.weight: .* where the config implies",
    ),
    "missing key": (
        lambda p: _rewrite_weights(p, lambda t: t.pop(GRU)),
        r"missing tensors \['rssm\.gru\.linear\.weight'\]",
    ),
    "extra key": (
        lambda p: _rewrite_weights(p, lambda t: t.update({"backdoor": torch.zeros(3)})),
        r"unexpected tensors \['backdoor'\]",
    ),
    "newer format": (
        lambda p: _edit_config(p, lambda c: c.update({"format_version": 2})),
        r"format version 2; this wmsim .* reads version 1: upgrade wmsim",
    ),
    "unknown top-level field": (
        lambda p: _edit_config(p, lambda c: c.update({"teleport": True})),
        r"unknown field\(s\) \['teleport'\].*upgrade wmsim",
    ),
    "unknown model field": (
        lambda p: _edit_config(p, lambda c: c["model"]["rssm"].update({"warp": 9})),
        r"config\.json: .*warp",
    ),
    "unknown storage dtype": (
        lambda p: _edit_config(p, lambda c: c.update({"weights_dtype": "int4"})),
        r"weights_dtype 'int4'",
    ),
    "bad start states": (
        lambda p: save_file({"obs": torch.zeros(1)}, str(p / "start_states.safetensors")),
        r"start_states\.safetensors does not match its config\.json: missing tensors",
    ),
}


def _nan_weights_with_a_valid_checksum(path: Path) -> None:
    _rewrite_weights(path, lambda t: t[GRU].fill_(float("nan")))
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    _edit_config(path, lambda c: c["checksums"].update({"model.safetensors": digest}))


def _onnx_record(file: str) -> dict:
    graph = {"file": file, "sha256": "0" * 64, "inputs": [], "outputs": []}
    return {"format_version": 1, "opset": 17, "graphs": {"transition": graph}}


HOSTILE.update(
    {
        "non-finite weights with a valid checksum": (
            _nan_weights_with_a_valid_checksum,
            r"model\.safetensors: tensor\(s\) \['rssm\.gru\.linear\.weight'\] hold NaN or infinite values",
        ),
        "negative number of start states": (
            lambda p: _edit_config(p, lambda c: c.update({"num_start_states": -3})),
            r"num_start_states=-3 must be an integer >= 0",
        ),
        "onnx graph above the bundle": (
            lambda p: _edit_config(p, lambda c: c.update({"onnx": _onnx_record("../../x.onnx")})),
            r"names the file '\.\./\.\./x\.onnx', which is not a path inside the bundle folder",
        ),
        "onnx graph at an absolute path": (
            lambda p: _edit_config(p, lambda c: c.update({"onnx": _onnx_record("/etc/shadow")})),
            r"names the file '/etc/shadow', which is not a path inside the bundle folder",
        ),
        "onnx graph escaping through a subfolder": (
            lambda p: _edit_config(
                p, lambda c: c.update({"onnx": _onnx_record("onnx/../../../proc/self/environ")})
            ),
            r"'onnx/\.\./\.\./\.\./proc/self/environ', which is not a path inside the bundle folder",
        ),
        "onnx graph with a backslash escape": (
            lambda p: _edit_config(p, lambda c: c.update({"onnx": _onnx_record("..\\..\\x.onnx")})),
            r"which is not a path inside the bundle folder",
        ),
    }
)


def _flip(data: bytes) -> bytes:
    position = len(data) - 100  # inside the tensor data, past the JSON header
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bundles_are_refused_with_the_file_and_the_fix(tmp_path: Path, case: str) -> None:
    _, path = _save(tmp_path / "b")
    damage, message = HOSTILE[case]
    damage(path)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_save_refuses_an_unknown_storage_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weights_dtype='int8': choose one of"):
        _save(tmp_path / "b", weights_dtype="int8")


def test_a_bundle_write_killed_midway_leaves_the_previous_bundle_loadable(tmp_path: Path) -> None:
    model, path = _save(tmp_path / "b")
    (path / "transfer.json").write_text("{}")  # written by other commands: kept across saves
    code = (
        "import os, torch\n"
        "import wmsim.bundle as b\n"
        "real = b.save_file\n"
        "def save_file(tensors, file, **kw):\n"
        "    real(tensors, file, **kw)\n"
        "    if file.endswith('model.safetensors'):\n"
        "        os._exit(9)\n"
        "b.save_file = save_file\n"
        "from wmsim.config import model_preset\n"
        "from wmsim.envs import EnvSpec\n"
        "loaded = b.load_bundle(" + repr(str(path)) + ")\n"
        "with torch.no_grad():\n"
        "    loaded.model.rssm.gru.linear.weight.add_(1.0)\n"
        "b.save_bundle(" + repr(str(path)) + ", loaded.model, loaded.env_spec, loaded.spaces,"
        " loaded.start_states)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 9, done.stderr[-3000:]
    loaded = load_bundle(path)  # the previous bundle, whole
    assert torch.equal(loaded.model.state_dict()[GRU], model.state_dict()[GRU])
    assert (path / "transfer.json").read_text() == "{}"
    leftovers = sorted(p.name for p in path.parent.iterdir() if p != path)
    assert leftovers and all(name.startswith(".b.") for name in leftovers), leftovers
    save_bundle(path, loaded.model, loaded.env_spec, loaded.spaces, loaded.start_states)
    assert sorted(p.name for p in path.parent.iterdir()) == ["b"], "the next write cleans the killed one's"
    assert (path / "transfer.json").read_text() == "{}"


def test_the_card_names_the_bundle_folder_not_the_temporary_one(tmp_path: Path) -> None:
    _, path = _save(tmp_path / "my-model")
    card = (path / "README.md").read_text()
    assert "my-model" in card and ".tmp" not in card
