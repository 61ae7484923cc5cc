"""Dream environments: Gymnasium and SB3 contracts, autoreset, seeding, torch API, bad input."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import wmsim
from wmsim.bundle import Bundle
from wmsim.dream import DreamEnv, DreamVectorEnv, LatentObservation
from wmsim.dream.sb3 import DreamSB3VecEnv
from wmsim.envs import make_env

pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value.*")


@pytest.mark.parametrize("obs_mode", ["latent", "pixels", "dict"])
@pytest.mark.parametrize("which", ["cartpole_bundle", "pendulum_bundle"])
def test_single_env_passes_gymnasium_and_sb3_checkers(
    which: str, obs_mode: str, request: pytest.FixtureRequest
) -> None:
    bundle: Bundle = request.getfixturevalue(which)
    env = DreamEnv(bundle, obs_mode=obs_mode, seed=0)
    check_env(env, skip_render_check=True)
    if obs_mode != "dict":
        sb3_check_env(env, warn=False)
    assert env.action_space == make_env(bundle.env_spec).action_space


def test_pixel_dream_of_an_image_model_looks_like_the_real_env(pong_bundle: Bundle) -> None:
    env = DreamEnv(pong_bundle, obs_mode="pixels", render_mode="rgb_array", seed=0)
    real = make_env(pong_bundle.env_spec)
    assert env.observation_space == real.observation_space  # Box(0, 255, (64, 64, 1), uint8)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 1)
    frame = env.render()
    assert frame is not None and frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    check_env(env)


def test_make_vec_returns_the_native_batched_env(cartpole_bundle: Bundle) -> None:
    assert cartpole_bundle.path is not None
    env_id = wmsim.register_dream("TestCartPole", str(cartpole_bundle.path), device="cpu")
    vec = gym.make_vec(env_id, num_envs=64, seed=3)
    assert isinstance(vec, DreamVectorEnv) and vec.num_envs == 64
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (64, cartpole_bundle.model.config.rssm.feat_size) and obs.dtype == np.float32
    single = gym.make(env_id, obs_mode="pixels")
    assert single.observation_space.shape == (4,)
    single.reset(seed=0)
    single.step(1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    num_envs=st.integers(1, 33),
    steps=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    limit=st.integers(1, 5),
    data=st.data(),
)
def test_random_action_sequences_keep_every_contract(
    cartpole_bundle: Bundle, num_envs: int, steps: int, seed: int, limit: int, data: st.DataObject
) -> None:
    vec = DreamVectorEnv(cartpole_bundle, num_envs, obs_mode="dict", time_limit=limit, seed=seed)
    bank = {tuple(row) for row in _bank_features(cartpole_bundle)}
    actions = [
        np.asarray(data.draw(st.lists(st.integers(0, 1), min_size=num_envs, max_size=num_envs)))
        for _ in range(steps)
    ]
    obs, _ = vec.reset(seed=seed)
    trajectory = [obs["latent"].copy()]
    ended = np.zeros(num_envs, bool)
    elapsed = np.zeros(num_envs, int)
    for action in actions:
        obs, reward, terminated, truncated, _ = vec.step(action)
        assert vec.single_observation_space.contains({k: v[0] for k, v in obs.items()})
        assert vec.observation_space.contains(obs)
        assert obs["latent"].dtype == np.float32 and np.isfinite(obs["latent"]).all()
        assert np.isfinite(reward).all() and terminated.dtype == bool and truncated.dtype == bool
        # Gymnasium's NEXT_STEP autoreset: the step after an episode ends is a reset step.
        assert (reward[ended] == 0).all() and not terminated[ended].any() and not truncated[ended].any()
        for i in np.flatnonzero(ended):
            assert tuple(obs["latent"][i, : len(next(iter(bank)))]) in bank
        elapsed = np.where(ended, 0, elapsed + 1)
        assert (truncated == ((elapsed >= limit) & ~terminated)).all()
        assert not (terminated & truncated).any()
        ended = terminated | truncated
        trajectory.append(obs["latent"].copy())
    # Same seed, same actions: the same trajectory.
    again = DreamVectorEnv(cartpole_bundle, num_envs, obs_mode="dict", time_limit=limit, seed=seed)
    obs, _ = again.reset(seed=seed)
    np.testing.assert_array_equal(obs["latent"], trajectory[0])
    for action, expected in zip(actions, trajectory[1:], strict=True):
        np.testing.assert_array_equal(again.step(action)[0]["latent"], expected)


def _bank_features(bundle: Bundle) -> np.ndarray:
    classes = bundle.model.config.rssm.classes
    state = bundle.start_states.state(torch.arange(len(bundle.start_states)), classes)
    return torch.cat([state.deter, state.stoch.flatten(-2)], -1).numpy()


def test_same_step_autoreset_reports_final_observations(pendulum_bundle: Bundle) -> None:
    vec = DreamVectorEnv(pendulum_bundle, 16, autoreset="same_step", time_limit=2, seed=0)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    bank = {tuple(row) for row in _bank_features(pendulum_bundle)}
    vec.reset(seed=0)
    action = np.zeros((16, 1), np.float32)
    elapsed = np.zeros(16, int)
    for _ in range(4):
        obs, _, terminated, truncated, info = vec.step(action)
        elapsed += 1
        done = terminated | truncated
        assert (truncated == ((elapsed >= 2) & ~terminated)).all()
        np.testing.assert_array_equal(info.get("_final_obs", np.zeros(16, bool)), done)
        for i in np.flatnonzero(done):
            assert vec.single_observation_space.contains(info["final_obs"][i])
            assert tuple(obs[i]) in bank  # already the next episode's first observation
        elapsed[done] = 0


def test_sb3_vec_env_contract(pendulum_bundle: Bundle) -> None:
    venv = DreamSB3VecEnv(pendulum_bundle, 16, time_limit=3, seed=0)
    bank = {tuple(row) for row in _bank_features(pendulum_bundle)}
    obs = venv.reset()
    assert obs.shape == (16, pendulum_bundle.model.config.rssm.feat_size)
    elapsed = np.zeros(16, int)
    for _ in range(7):
        venv.step_async(np.zeros((16, 1), np.float32))
        obs, rewards, dones, infos = venv.step_wait()
        elapsed += 1
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 16
        assert dones[elapsed >= 3].all()  # the time limit always ends the episode
        for i, (info, done) in enumerate(zip(infos, dones, strict=True)):
            assert done == ("terminal_observation" in info)
            if done:
                assert venv.observation_space.contains(info["terminal_observation"])
                assert tuple(obs[i]) in bank  # SB3: the returned obs already starts the next episode
                if info["TimeLimit.truncated"]:
                    assert elapsed[i] == 3
        elapsed[dones] = 0


def test_reset_from_a_real_observation(cartpole_bundle: Bundle) -> None:
    real = make_env(cartpole_bundle.env_spec)
    frame, _ = real.reset(seed=5)
    env = DreamEnv(cartpole_bundle, obs_mode="dict", seed=0)
    obs, _ = env.reset(seed=0, options={"observation": frame})
    latent = LatentObservation(make_env(cartpole_bundle.env_spec), cartpole_bundle, seed=0)
    expected, _ = latent.reset(seed=5)
    d = cartpole_bundle.model.config.rssm.deter
    np.testing.assert_allclose(obs["latent"][:d], expected[:d], atol=1e-5)  # same posterior deter


def test_torch_api_is_differentiable_for_continuous_actions(pendulum_bundle: Bundle) -> None:
    vec = DreamVectorEnv(pendulum_bundle, 8, device="cpu", seed=0)
    vec.reset_tensor(seed=0)
    action = torch.zeros(8, 1, requires_grad=True)
    total = torch.zeros(())
    for _ in range(3):
        obs, reward, _, _ = vec.step_tensor(action * 1.0, differentiable=True)
        assert isinstance(obs, torch.Tensor) and obs.device.type == "cpu"
        total = total + reward.sum()
    total.backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in vec.sim.model.parameters())  # the model is not trained here
    # Without the flag no graph is kept.
    _, reward, _, _ = vec.step_tensor(torch.zeros(8, 1))
    assert not reward.requires_grad


@pytest.mark.parametrize(
    ("which", "action", "message"),
    [
        ("cartpole_bundle", np.zeros((3, 1), np.int64), r"shape \(3, 1\).*expects \(3,\) integer"),
        ("cartpole_bundle", np.zeros(3, np.float32), "dtype float32; discrete actions must be integers"),
        ("cartpole_bundle", np.array([0, 1, 2]), r"out of range.*\[0, 2\)"),
        ("pendulum_bundle", np.zeros(3, np.float32), r"shape \(3,\); this dream expects \(3, 1\)"),
        ("pendulum_bundle", np.full((3, 1), np.nan, np.float32), "NaN or inf"),
        ("pendulum_bundle", np.full((3, 1), 5.0, np.float32), "outside the action space"),
        ("pendulum_bundle", np.zeros((3, 1), np.int64), "must be floats"),
    ],
)
def test_bad_actions_get_clear_errors(
    which: str, action: np.ndarray, message: str, request: pytest.FixtureRequest
) -> None:
    vec = DreamVectorEnv(request.getfixturevalue(which), 3, seed=0)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        vec.step(action)


def test_bad_construction_gets_clear_errors(cartpole_bundle: Bundle, pong_bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="unknown model 'NoSuchModel'"):
        DreamVectorEnv("NoSuchModel")
    with pytest.raises(ValueError, match="obs_mode='rgb'"):
        DreamVectorEnv(cartpole_bundle, obs_mode="rgb")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' is unavailable"):
            DreamVectorEnv(cartpole_bundle, device="cuda")
    with pytest.raises(ValueError, match="num_envs=0"):
        DreamVectorEnv(cartpole_bundle, 0)
    with pytest.raises(ValueError, match="does not match the model's observations"):
        LatentObservation(make_env("CartPole-v1"), pong_bundle)
    with pytest.raises(gym.error.Error):
        gym.make("wmsim/NoSuchModel-dream")
    env = DreamEnv(cartpole_bundle, seed=0)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


def test_dream_video_has_one_frame_per_step(pong_bundle: Bundle, tmp_path: Path) -> None:
    import imageio.v3 as iio

    path = wmsim.write_dream_video(pong_bundle, tmp_path / "dream.gif", steps=6, num_envs=2, scale=1)
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 7 and frames.shape[1] == 68 and frames.shape[2] == 2 * 68


def test_bundle_whose_spaces_do_not_match_its_model_is_refused(cartpole_bundle: Bundle) -> None:
    import dataclasses

    spaces = {
        **cartpole_bundle.spaces,
        "observation": {**cartpole_bundle.spaces["observation"], "shape": [5], "low": -1.0, "high": 1.0},
    }
    broken = dataclasses.replace(cartpole_bundle, spaces=spaces)
    for mode in ("latent", "pixels", "dict"):
        with pytest.raises(ValueError, match=r"does not match its model's observation shape \(4,\)"):
            DreamVectorEnv(broken, obs_mode=mode)


@pytest.mark.parametrize("time_limit", [-1, 0, 2.5, True])
def test_a_time_limit_that_is_not_a_positive_step_count_is_refused(
    cartpole_bundle: Bundle, time_limit: object
) -> None:
    with pytest.raises(ValueError, match=r"time_limit=.* must be an integer >= 1 .*or None"):
        DreamVectorEnv(cartpole_bundle, 2, time_limit=time_limit)  # type: ignore[arg-type]
    assert DreamVectorEnv(cartpole_bundle, 2, time_limit=3).time_limit == 3


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_observation_to_dream_from_is_refused(cartpole_bundle: Bundle, bad: float) -> None:
    vec = DreamVectorEnv(cartpole_bundle, 2, seed=0)
    real = np.zeros((2, 4), np.float32)
    real[1, 2] = bad
    with pytest.raises(ValueError, match=r"options\['observation'\] contains NaN or inf"):
        vec.reset(options={"observation": real})
