"""Offline pretraining (the PWM recipe): scripted behaviours that play well enough to show a model the
states a good policy meets, and ``wmsim pretrain`` collecting, fitting, resuming and bundling."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import behaviours
from agents.behaviours import (
    behaviour_for,
    cartpole_balancer,
    cartpole_swinger,
    pendulum_swinger,
    pong_tracker,
)
from agents.cli import main
from agents.replay import Replay
from wmsim.bundle import load_bundle
from wmsim.envs import make_env


def _episode_return(env: gym.Env, act: object, seed: int, max_steps: int = 10_000) -> float:
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(max_steps):
        obs, reward, terminated, truncated, _ = env.step(act(obs))  # type: ignore[operator]
        total += float(reward)
        if terminated or truncated:
            break
    return total


def test_scripted_control_behaviours_play_well() -> None:
    cartpole = gym.make("CartPole-v1")
    assert min(_episode_return(cartpole, cartpole_balancer(cartpole), s) for s in range(3)) == 500.0
    pendulum = gym.make("Pendulum-v1")
    swung = [_episode_return(pendulum, pendulum_swinger(pendulum), s) for s in range(4)]
    assert np.mean(swung) > -300, swung  # random is about -1200


def test_cartpole_swinger_swings_up_and_balances() -> None:
    env = make_env("dmc/cartpole-swingup", obs_type="state")
    swung = [_episode_return(env, cartpole_swinger(env), s) for s in range(2)]
    env.action_space.seed(0)
    random = [_episode_return(env, lambda obs: env.action_space.sample(), s) for s in range(2)]
    env.close()
    assert min(swung) > 700 and max(random) < 300, (swung, random)  # measured: about 830 and 60


def test_mixed_pong_never_gives_up() -> None:
    """Pong's mixed data keeps playing scripted to the end (only per-episode epsilon noise): giving up
    part-way turned most of a Pong dataset into random play."""
    env = make_env("atari/Pong")
    rng = np.random.default_rng(0)
    act = behaviour_for("mixed", "atari/Pong", env, 0, rng)  # episode 0: epsilon 0
    tracker = pong_tracker(env)
    obs, _ = env.reset(seed=3)
    for _ in range(2000):
        assert act(obs) == tracker(obs)
        obs, *_ = env.step(tracker(obs))
    env.close()


def test_pong_tracker_returns_the_ball_and_scores() -> None:
    env = make_env("atari/Pong")
    act = pong_tracker(env)
    obs, _ = env.reset(seed=1)
    scored = conceded = 0
    for _ in range(1500):
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        scored, conceded = scored + (reward > 0), conceded + (reward < 0)
        if terminated or truncated:
            break
    env.close()
    assert scored >= 2 and conceded <= 3 * scored, (scored, conceded)  # random scores about 0 in 1500 steps


def test_mixed_behaviour_covers_good_play_and_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    rng = np.random.default_rng(0)

    def lengths(count: int) -> list[float]:
        return [
            _episode_return(env, behaviour_for("mixed", "CartPole-v1", env, e, rng), e) for e in range(count)
        ]

    episodes = lengths(40)
    assert np.mean(episodes) > 100 and max(episodes) >= 400, episodes  # random play lasts about 22 steps
    assert sum(length < 500 for length in episodes) >= 30, episodes  # and most episodes end by failing
    monkeypatch.setattr(behaviours, "MIXED_GIVE_UP", 0.0)
    never_give_up = lengths(4)
    assert never_give_up[0] == 500.0 and never_give_up[3] < 100, never_give_up  # epsilon 0 ... 1
    with pytest.raises(ValueError, match=r"no scripted behaviour for 'MountainCar-v0'.*--behaviour random"):
        behaviour_for("scripted", "MountainCar-v0", env, 0, rng)


def test_pretrain_collects_fits_resumes_and_bundles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logdir = tmp_path / "run"
    args = ["pretrain", "--preset", "tiny", "--env", "CartPole-v1", "--data_steps", "600", "--seq_len", "16"]
    args += ["--logdir", str(logdir), "--checkpoint_every", "5", "--quiet"]
    assert main([*args, "--updates", "10"]) == 0
    dataset = json.loads((logdir / "dataset.json").read_text())
    assert dataset["steps"] >= 600 and dataset["behaviour"] == "mixed"
    with caplog.at_level("INFO", logger="agents.offline"):
        assert main([*args, "--updates", "15"]) == 0
    assert "resumed" in caplog.text and "at update 10" in caplog.text
    bundle = load_bundle(logdir / "bundle")
    assert bundle.info["updates"] == 15 and bundle.info["dataset"]["steps"] == dataset["steps"]
    assert len(bundle.start_states) == dataset["episodes"]
    assert main([*args, "--updates", "15", "--behaviour", "random"]) == 2  # another dataset: refused


def test_loss_weights_may_change_between_stages_of_a_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logdir = tmp_path / "run"
    args = ["pretrain", "--preset", "tiny", "--env", "CartPole-v1", "--data_steps", "400", "--seq_len", "8"]
    args += ["--logdir", str(logdir), "--checkpoint_every", "5", "--quiet"]
    assert main([*args, "--updates", "5", "--model.loss.kl_scale", "0.1"]) == 0
    with caplog.at_level("WARNING", logger="agents.offline"):
        assert main([*args, "--updates", "10", "--model.loss.kl_scale", "0.03"]) == 0
    assert "loss weights change at update 5" in caplog.text
    stage = {"from_update": 5, "loss": {"kl_scale": [0.1, 0.03]}}
    assert json.loads((logdir / "pretrain_config.json").read_text())["loss_stages"] == [stage]
    info = load_bundle(logdir / "bundle").info
    assert info["updates"] == 10 and info["pretrain_config"]["loss_stages"] == [stage]
    assert info["pretrain_config"]["model"]["loss"]["kl_scale"] == 0.03
    # a run saved before a loss weight existed trained with its default
    saved = json.loads((logdir / "pretrain_config.json").read_text())
    del saved["model"]["loss"]["object_scale"]
    (logdir / "pretrain_config.json").write_text(json.dumps(saved))
    assert (
        main([*args, "--updates", "10", "--model.loss.kl_scale", "0.03", "--model.loss.object_scale", "5"])
        == 0
    )
    stages = json.loads((logdir / "pretrain_config.json").read_text())["loss_stages"]
    assert stages == [stage, {"from_update": 10, "loss": {"object_scale": [1.0, 5.0]}}]
    # the architecture is still fixed for the run
    assert main([*args, "--updates", "10", "--model.rssm.deter", "24"]) == 2


def test_init_from_starts_a_new_run_from_a_bundles_world_model(tmp_path: Path) -> None:
    base = ["pretrain", "--preset", "tiny", "--env", "CartPole-v1", "--data_steps", "400", "--seq_len", "8"]
    base += ["--quiet"]
    assert main([*base, "--logdir", str(tmp_path / "a"), "--updates", "5"]) == 0
    source = load_bundle(tmp_path / "a" / "bundle").model.state_dict()
    # with a learning rate of 1e-12 the fine-tuned model is the source (but for 1e-6 weight decay)
    tuned = [*base, "--seed", "1", "--model.optim.lr", "1e-12", "--init_from", str(tmp_path / "a" / "bundle")]
    assert main([*tuned, "--logdir", str(tmp_path / "b"), "--updates", "2"]) == 0
    result = load_bundle(tmp_path / "b" / "bundle")
    assert result.info["pretrain_config"]["init_from"] == str(tmp_path / "a" / "bundle")
    for name, tensor in result.model.state_dict().items():
        assert torch.allclose(tensor, source[name], rtol=1e-4, atol=1e-6), name
    fresh = [
        *base,
        "--seed",
        "1",
        "--model.optim.lr",
        "1e-12",
        "--logdir",
        str(tmp_path / "c"),
        "--updates",
        "2",
    ]
    assert main(fresh) == 0
    weights = load_bundle(tmp_path / "c" / "bundle").model.state_dict()
    assert not all(torch.allclose(weights[k], source[k]) for k in source)
    # another architecture is refused before any data is collected
    other = [*base, "--model.rssm.deter", "24", "--init_from", str(tmp_path / "a" / "bundle")]
    assert main([*other, "--logdir", str(tmp_path / "d"), "--updates", "2"]) == 2
    assert not (tmp_path / "d" / "dataset.json").exists() and not (tmp_path / "d" / "bundle").exists()
    assert main([*base, "--init_from", "NoSuchModel", "--logdir", str(tmp_path / "e"), "--updates", "2"]) == 2


def test_start_context_banks_states_from_the_middle_of_episodes(tmp_path: Path) -> None:
    args = ["pretrain", "--preset", "tiny", "--env", "CartPole-v1", "--data_steps", "600", "--seq_len", "8"]
    args += ["--behaviour", "random", "--updates", "3", "--start_states", "20", "--quiet"]
    assert main([*args, "--logdir", str(tmp_path / "a")]) == 0
    firsts = load_bundle(tmp_path / "a" / "bundle").start_states
    data = Replay(tmp_path / "a" / "replay", 10_000).contents()
    starts_obs = data["obs"][data["is_first"]]
    assert all(any(np.array_equal(o, f) for f in starts_obs) for o in firsts.obs.numpy())
    # the same run's bundle again, with states after 5 real steps: the rerun only rewrites the bundle
    assert main([*args, "--logdir", str(tmp_path / "a"), "--start_context", "5"]) == 0
    mid = load_bundle(tmp_path / "a" / "bundle")
    assert len(mid.start_states) == 20 and mid.info["pretrain_config"]["start_context"] == 5
    ends = [int(np.flatnonzero((data["obs"] == o).all(-1))[0]) for o in mid.start_states.obs.numpy()]
    episode_of = np.cumsum(data["is_first"]) - 1
    for end in ends:  # each state ends a window of 5 steps inside one episode
        assert end >= 4 and episode_of[end - 4] == episode_of[end]
    assert not all(data["is_first"][end] for end in ends)
    # the model's state after a window differs from its state at a first observation
    assert not torch.equal(mid.start_states.deter, firsts.deter)
    assert main([*args, "--logdir", str(tmp_path / "b"), "--start_context", "5"]) == 0
    again = load_bundle(tmp_path / "b" / "bundle").start_states
    assert torch.equal(again.deter, mid.start_states.deter) and torch.equal(
        again.stoch, mid.start_states.stoch
    )
    assert main([*args, "--logdir", str(tmp_path / "c"), "--start_context", "-1"]) == 2


def test_add_data_grows_the_dataset_with_a_dream_trained_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logdir = tmp_path / "run"
    args = ["pretrain", "--preset", "tiny", "--env", "CartPole-v1", "--data_steps", "400", "--seq_len", "8"]
    args += ["--logdir", str(logdir), "--checkpoint_every", "5", "--quiet"]
    assert main([*args, "--updates", "5"]) == 0
    add = ["add-data", str(logdir), "--steps", "300", "--quiet"]
    # the pretraining bundle has no policy yet
    assert main([*add, "--policy", str(logdir / "bundle")]) == 2
    assert "holds no policy" in capsys.readouterr().err
    dreamed = tmp_path / "dreamed"
    train = ["train", "--preset", "tiny", "--dream", str(logdir / "bundle"), "--dream-updates", "2"]
    assert main([*train, "--dream-replay", str(logdir / "replay"), "--out", str(dreamed), "--quiet"]) == 0
    before = json.loads((logdir / "dataset.json").read_text())["steps"]
    chunks = sorted(p.name for p in (logdir / "replay").glob("*.npz"))
    assert main([*add, "--policy", str(dreamed), "--epsilon", "0.5"]) == 0
    assert "added 300 steps" in capsys.readouterr().out
    record = json.loads((logdir / "dataset.json").read_text())["additions"][0]
    assert record["steps"] == 300 and record["after_update"] == 5 and record["policy"] == str(dreamed)
    assert 100 < record["random_actions"] < 200  # epsilon 0.5 of 300 steps
    replay = Replay(logdir / "replay", 400 + 100_000)
    data = replay.contents()
    assert replay.total_steps == before + 300 + record["episodes"]  # one first step per episode
    added = {k: v[before:] for k, v in data.items()}
    assert added["is_first"].sum() == record["episodes"] and added["is_last"][-1]
    assert set(chunks) <= {p.name for p in (logdir / "replay").glob("*.npz")}, "old data was evicted"
    # fitting goes on over the grown dataset, and the bundle says where its data came from
    assert main([*args, "--updates", "10"]) == 0
    info = load_bundle(logdir / "bundle").info
    assert info["updates"] == 10 and info["dataset"]["additions"] == [record]
    assert "300 steps of a dream-trained policy added after update 5" in capsys.readouterr().out
    assert "added after update 5: 300 real steps" in (logdir / "bundle" / "README.md").read_text()
    # another env's policy, and more steps than the replay can hold, are refused with the fix
    assert main([*add, "--policy", "Pendulum"]) == 2
    assert "plays gym/Pendulum-v1, the run" in capsys.readouterr().err
    assert main(["add-data", str(logdir), "--policy", str(dreamed), "--steps", "200000"]) == 2
    assert "would evict the oldest data" in capsys.readouterr().err
    assert main(["add-data", str(tmp_path / "none"), "--policy", str(dreamed), "--steps", "10"]) == 2
    assert "holds no pretraining run" in capsys.readouterr().err


def test_a_run_that_gathered_nothing_takes_other_settings(tmp_path: Path) -> None:
    """A refusal before any data (here an unknown --init_from) leaves only the settings behind; the
    corrected command then starts the run in the same --logdir. Once data exists, the settings hold."""
    args = ["pretrain", "--preset", "tiny", "--env", "CartPole-v1", "--data_steps", "100", "--seq_len", "8"]
    args += ["--updates", "1", "--logdir", str(tmp_path / "run"), "--quiet"]
    assert main([*args, "--init_from", "NoSuchModel"]) == 2
    assert (tmp_path / "run" / "pretrain_config.json").exists()
    assert main(args) == 0
    assert main([*args, "--behaviour", "random"]) == 2
