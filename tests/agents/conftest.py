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

import pytest

from agents.sweep import cartpole_world_model
from agents.train import TrainResult


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    # The sweep's CartPole world model of seed 0: 5k random-policy env steps, about 800 updates of the
    # small preset (`wmsim sweep cartpole-ppo-latent` runs the same on other seeds).
    return cartpole_world_model(0, tmp_path_factory.mktemp("cartpole"))
