"""Bundles of randomly initialised tiny world models for the real envs' spaces: the dream API does not
depend on the weights being trained, and these build in well under a second."""

from __future__ import annotations

import os
import tempfile

# Nothing at test time reaches the network: the Hub client is offline and caches in a temporary
# folder (set before anything imports huggingface_hub; the Hub tests fake the client, see tests/hub).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="wmsim-test-hf-home-"))

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from wmsim.bundle import Bundle, encode_start_states, load_bundle, save_bundle
from wmsim.config import model_preset
from wmsim.envs import describe_spaces, env_spec_of, make_env
from wmsim.world_model import IOSpec, WorldModel


def build_bundle(directory: Path, env_id: str, starts: int = 8, **env_overrides: object) -> Bundle:
    env = make_env(env_id, **env_overrides)
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    torch.manual_seed(0)
    model = WorldModel(model_preset("tiny"), io)
    first = [env.reset(seed=i)[0] for i in range(starts)]
    states = encode_start_states(model, torch.as_tensor(np.stack(first)))
    spec = env_spec_of(env)
    save_bundle(directory, model, spec, describe_spaces(env), states)
    env.close()
    return load_bundle(directory)


@pytest.fixture(scope="session")
def cartpole_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return build_bundle(tmp_path_factory.mktemp("cartpole") / "bundle", "CartPole-v1")


@pytest.fixture(scope="session")
def pendulum_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return build_bundle(tmp_path_factory.mktemp("pendulum") / "bundle", "Pendulum-v1")


@pytest.fixture(scope="session")
def pong_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return build_bundle(tmp_path_factory.mktemp("pong") / "bundle", "atari/Pong", starts=4)


@pytest.fixture(scope="session")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
    cartpole_bundle: Bundle,
    pendulum_bundle: Bundle,
    pong_bundle: Bundle,
) -> dict[str, Path]:
    """Copies of the tiny test bundles with their ONNX graphs exported into them: bundle directories
    both backends can dream from."""
    from wmsim.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    folders = {}
    for name, bundle in (("cartpole", cartpole_bundle), ("pendulum", pendulum_bundle), ("pong", pong_bundle)):
        assert bundle.path is not None
        folders[name] = Path(shutil.copytree(bundle.path, root / name))
        export_onnx(folders[name])
    return folders


@pytest.fixture(scope="session")
def multitask_exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny two-task bundle of test_multitask.py (cartpole-swingup: 5 observations, 1 action;
    reacher-easy: 6 and 2) with its ONNX graphs exported, one set per task: a bundle directory both
    backends dream each task from."""
    from test_multitask import save_multitask, tiny_model

    from wmsim.onnx_export import export_onnx

    directory = tmp_path_factory.mktemp("multitask-onnx") / "bundle"
    save_multitask(directory, tiny_model())
    export_onnx(directory)
    return directory
