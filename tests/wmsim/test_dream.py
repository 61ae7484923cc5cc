"""Dream environments on the torch backend: random action sequences against every contract, the tensor
API with gradients, videos, inconsistent bundles. The contract shared with the onnxruntime backend is
tested on both in test_dream_contract.py."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wmsim
from wmsim.bundle import Bundle
from wmsim.dream import DreamVectorEnv

pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value.*")


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


def test_bad_input_to_the_torch_api_gets_clear_errors(cartpole_bundle: Bundle) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' is unavailable"):
            DreamVectorEnv(cartpole_bundle, device="cuda")
    with pytest.raises(gym.error.Error):
        gym.make("wmsim/NoSuchModel-dream")
    vec = DreamVectorEnv(cartpole_bundle, 2, device="cpu")
    with pytest.raises(RuntimeError, match=r"call reset\(\) \(or reset_tensor\(\)\) before step"):
        vec.step_tensor(torch.zeros(2, dtype=torch.int64))
    vec.reset_tensor(seed=0)
    with pytest.raises(ValueError, match=r"action tensor \(2, 1\) torch.int64: expected \(2,\) integers"):
        vec.step_tensor(torch.zeros(2, 1, dtype=torch.int64))


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
