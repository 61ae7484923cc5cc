"""The pretrained models shipped with wmsim: each loads by its registered id offline, passes Gymnasium's
env checker, and carries a card with measured figures."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from wmsim.bundle import load_bundle
from wmsim.card import PUBLISHED_SCORES
from wmsim.registry import PRETRAINED, resolve_model_dir

SHIPPED = sorted(name for name, entry in PRETRAINED.items() if entry.shipped_dir is not None)
MAX_SHIPPED_MB = 60


def shipped_tasks(name: str) -> list[str]:
    """The tasks of a shipped multi-task model (empty for a single-task one)."""
    config = json.loads((PRETRAINED[name].shipped_dir / "config.json").read_text())  # type: ignore[operator]
    return [task["name"] for task in config.get("tasks") or []]


SINGLE = [name for name in SHIPPED if not shipped_tasks(name)]
MULTI = [name for name in SHIPPED if shipped_tasks(name)]


def test_the_release_ships_models_within_the_size_budget() -> None:
    assert {"CartPole", "Pendulum", "CartpoleSwingup"} <= set(SHIPPED)
    total = sum(
        f.stat().st_size
        for name in SHIPPED
        for f in PRETRAINED[name].shipped_dir.rglob("*")
        if f.is_file()  # type: ignore[union-attr]
    )
    assert total < MAX_SHIPPED_MB * 2**20, f"{total / 2**20:.1f} MB shipped"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_makes_a_valid_env_offline(name: str) -> None:
    assert resolve_model_dir(name) == PRETRAINED[name].shipped_dir  # empty Hub cache, HF_HUB_OFFLINE=1
    for task in shipped_tasks(name) or [None]:
        kwargs = {"task": task} if task else {}
        env = gym.make(f"wmsim/{name}-dream", **kwargs)
        check_env(env.unwrapped, skip_render_check=True)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        env.close()
        vec = gym.make_vec(f"wmsim/{name}-dream", num_envs=8, **kwargs)
        obs, _ = vec.reset(seed=0)
        obs, reward, *_ = vec.step(vec.action_space.sample())
        assert obs.shape[0] == 8 and np.isfinite(reward).all()
        vec.close()


@pytest.mark.parametrize("name", MULTI)
def test_shipped_multitask_model_reports_every_task(name: str) -> None:
    """A shipped multi-task model: its id needs ``task=``; its card gives, for every task, the PWM
    learner trained in the dream and the random baseline in the real env, and open-loop errors."""
    tasks = shipped_tasks(name)
    assert len(tasks) >= 8
    with pytest.raises(ValueError, match=tasks[0]):
        gym.make(f"wmsim/{name}-dream")  # which task: the error lists them
    folder = PRETRAINED[name].shipped_dir
    assert folder is not None and load_bundle(folder).info.get("commands"), "the recipe's commands"
    transfer = json.loads((folder / "transfer.json").read_text())["results"]
    openloop = json.loads((folder / "openloop.json").read_text())["tasks"]
    card = (folder / "README.md").read_text()
    assert f'gym.make("wmsim/{name}-dream", task="{tasks[0]}")' in card
    for task in tasks:
        assert {f"{task}/pwm_dream", f"{task}/random"} <= set(transfer), task
        assert all(r["episodes"] >= 10 for k, r in transfer.items() if k.startswith(f"{task}/"))
        assert openloop[task]["windows"] > 0 and len(openloop[task]["obs_mse"]) >= 15
        assert f"| `{task}` |" in card.split("## Fidelity")[1]
    for result in transfer.values():
        assert f"{result['mean']:.2f} +/- {result['std']:.2f}" in card


@pytest.mark.parametrize("name", SINGLE)
def test_shipped_model_card_reports_its_figures(name: str) -> None:
    folder = PRETRAINED[name].shipped_dir
    assert folder is not None
    bundle = load_bundle(folder)
    assert bundle.has_policy and bundle.info.get("commands"), "policy and the recipe's commands"
    transfer = json.loads((folder / "transfer.json").read_text())["results"]
    assert {"dreamerv2_dream", "ppo_dream", "random"} <= set(transfer)
    assert all(result["episodes"] >= 10 for result in transfer.values())
    openloop = json.loads((folder / "openloop.json").read_text())
    assert openloop["windows"] > 0 and len(openloop["obs_mse"]) >= 15
    card = (folder / "README.md").read_text()
    assert f'gym.make("wmsim/{name}-dream")' in card
    for result in transfer.values():
        assert f"{result['mean']:.2f} +/- {result['std']:.2f}" in card
    assert "| 1 |" in card and "| 15 |" in card, "the fidelity table"
    assert (folder / "dream_vs_real.gif").is_file() and "dream_vs_real.gif" in card
    env_id = PRETRAINED[name].env_id
    if env_id in PUBLISHED_SCORES:  # the paper's score for the same task, quoted beside ours
        assert PUBLISHED_SCORES[env_id] in card


def test_dream_trained_policies_beat_random_in_the_real_env() -> None:
    """The shipped figures meet the release's bar: some policy trained only in the dream beats random by
    a wide margin in the real env (CartPole: >= 475)."""
    for name in SINGLE:
        results = json.loads((PRETRAINED[name].shipped_dir / "transfer.json").read_text())["results"]  # type: ignore[operator]
        best = max(results["dreamerv2_dream"]["mean"], results["ppo_dream"]["mean"])
        random = results["random"]
        assert best > random["mean"] + 2 * random["std"], (name, best, random)
    cartpole = json.loads((PRETRAINED["CartPole"].shipped_dir / "transfer.json").read_text())  # type: ignore[operator]
    assert cartpole["results"]["ppo_dream"]["mean"] >= 475


@pytest.mark.parametrize("name", MULTI)
def test_multitask_dream_teaches_pwm_on_several_tasks(name: str) -> None:
    """The shipped multi-task figures meet the release's bar: on at least 3 tasks the PWM learner
    trained only in the dream beats random by two of random's standard deviations in the real env."""
    results = json.loads((PRETRAINED[name].shipped_dir / "transfer.json").read_text())["results"]  # type: ignore[operator]
    beaten = [
        task
        for task in shipped_tasks(name)
        if results[f"{task}/pwm_dream"]["mean"]
        > results[f"{task}/random"]["mean"] + 2 * results[f"{task}/random"]["std"]
    ]
    assert len(beaten) >= 3, beaten
