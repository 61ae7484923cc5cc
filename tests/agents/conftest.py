"""A CartPole world model trained once per test session (about a minute on 2 CPU cores), shared by the
learning tests."""

from __future__ import annotations

import os
import tempfile

# Nothing at test time reaches the network: the Hub client is offline and caches in a temporary
# folder (set before anything imports huggingface_hub; the Hub tests fake the client, see tests/hub).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="wmsim-test-hf-home-"))

import dataclasses

import pytest

from agents.config import train_preset
from agents.train import TrainResult, train


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    # 5k random-policy env steps (no actor-critic), about 800 world-model updates of the small preset.
    config = dataclasses.replace(
        train_preset("small"),
        env="CartPole-v1",
        steps=5000,
        seed=0,
        logdir=str(tmp_path_factory.mktemp("cartpole") / "run"),
        checkpoint_every=5000,
        learn_policy=False,
    )
    return train(config, progress=False, evaluate=False)
