"""The SB3 recipes on a tiny untrained model: training in the dream logs episode returns as SB3 expects,
and every observation mode trains and then plays in the real env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.policies import MultiInputActorCriticPolicy

from agents.sb3 import evaluate_in_real, train_in_dream
from wmsim.bundle import encode_start_states, save_bundle
from wmsim.config import model_preset
from wmsim.envs import describe_spaces, env_spec_of, make_env
from wmsim.world_model import IOSpec, WorldModel

pytestmark = pytest.mark.filterwarnings("ignore:.*we recommend using a symmetric and normalized space.*")


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = make_env("Pendulum-v1")
    torch.manual_seed(0)
    model = WorldModel(model_preset("tiny"), IOSpec.from_spaces(env.observation_space, env.action_space))
    starts = encode_start_states(model, torch.as_tensor(np.stack([env.reset(seed=i)[0] for i in range(4)])))
    folder = tmp_path_factory.mktemp("pendulum") / "bundle"
    return save_bundle(folder, model, env_spec_of(env), describe_spaces(env), starts, card=False)


def test_train_in_dream_logs_episode_returns(pendulum: Path) -> None:
    # Pendulum's 200-step limit ends every dream at least once within 2 x 256 steps
    agent = train_in_dream(
        pendulum,
        total_timesteps=512,
        num_envs=2,
        algo_kwargs={"n_steps": 128, "batch_size": 128, "n_epochs": 1},
    )
    episodes = list(agent.ep_info_buffer)  # filled by VecMonitor, as SB3 logs ep_rew_mean from it
    assert len(episodes) >= 2 and {"r", "l"} <= set(episodes[0])
    assert all(1 <= episode["l"] <= 200 and np.isfinite(episode["r"]) for episode in episodes)


@pytest.mark.parametrize("obs_mode", ["latent", "decoded", "dict"])
def test_each_observation_mode_trains_in_the_dream_and_plays_the_real_env(
    pendulum: Path, obs_mode: str
) -> None:
    agent = train_in_dream(
        pendulum,
        total_timesteps=64,
        num_envs=2,
        obs_mode=obs_mode,
        algo_kwargs={"n_steps": 32, "batch_size": 32},
    )
    if obs_mode == "dict":
        assert isinstance(agent.policy, MultiInputActorCriticPolicy)
    result = evaluate_in_real(agent, pendulum, episodes=2, obs_mode=obs_mode, max_steps=5)
    assert len(result.returns) == 2 and np.isfinite(result.mean)
