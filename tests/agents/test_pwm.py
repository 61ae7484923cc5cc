"""PWM, first-order policy learning: the actor's gradient flows through the world model's dynamics, the
imagined return rises on a tiny model, and the command line pretrains a multi-task model, learns a
task's policy in it and plays that policy in the real env."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from agents.cli import main as cli_main
from agents.pwm import PWMLearner, pwm_preset
from wmsim.bundle import load_bundle
from wmsim.config import model_preset
from wmsim.world_model import IOSpec, TaskIO, WorldModel


def tiny_task_model() -> WorldModel:
    torch.manual_seed(0)
    io = IOSpec.multi_task([TaskIO("a", 3, 1), TaskIO("b", 4, 2)], embed=4)
    model = WorldModel(model_preset("tiny"), io).for_task("b")
    return model.requires_grad_(False).eval()


def test_gradient_of_a_later_reward_reaches_an_earlier_action_through_the_dynamics() -> None:
    """``r_2`` depends on ``a_0`` only through ``s_1`` (the GRU and the straight-through sample)."""
    model = tiny_task_model()
    state = model.rssm.initial(5)
    first = torch.zeros(5, 2, requires_grad=True)
    s1, _, _ = model.step(state, first)
    _, r2, _ = model.step(s1, torch.zeros(5, 2))
    r2.sum().backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    # and the straight-through path: through the stochastic part alone
    stoch_only = torch.zeros(5, 2, requires_grad=True)
    s1 = model.step(state, stoch_only)[0]
    s1.stoch.sum(-1).mul(torch.arange(4.0)).sum().backward()
    assert stoch_only.grad is not None and stoch_only.grad.abs().sum() > 0


def test_actor_gradient_flows_through_the_model_and_the_model_stays_frozen() -> None:
    model = tiny_task_model()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    learner = PWMLearner(pwm_preset("tiny"), model, total_updates=10)
    start = model.rssm.initial(8)
    feat, reward, _ = learner.imagine(model, start)
    horizon = learner.config.horizon
    assert feat.shape == (horizon + 1, 8, model.config.rssm.feat_size) and reward.shape == (horizon + 1, 8)
    # the actor sees sg(s_t) (detach): its gradient can only come through the dynamics and the heads
    reward[1:].sum().backward()
    grads = [p.grad for p in learner.actor.net.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0  # type: ignore[union-attr]
    metrics = learner.train_step(model, start)
    assert all(torch.isfinite(v) for v in metrics.values())
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[name])


def test_imagined_return_rises_on_a_tiny_model() -> None:
    """On a fixed random model whose reward head is made steep, PWM's updates raise the return."""
    model = tiny_task_model()
    last = model.reward_head[-1]
    last.weight.mul_(20.0)
    config = dataclasses.replace(pwm_preset("tiny"), num_envs=32, actor_lr=3e-3, lr_schedule="constant")
    torch.manual_seed(1)
    learner = PWMLearner(config, model, total_updates=60)
    start = model.rssm.initial(32)
    returns = [float(learner.train_step(model, start)["imag_return"]) for _ in range(60)]
    first, final = sum(returns[:5]) / 5, sum(returns[-5:]) / 5
    assert final > first + 0.1 * abs(first) + 0.05, (first, final)


def test_cli_pretrains_multitask_learns_with_pwm_and_evaluates(tmp_path: Path, capsys: object) -> None:
    logdir = tmp_path / "run"
    pretrain = [
        "pretrain",
        "--tasks",
        "dmc/cartpole-balance,dmc/reacher-easy",
        "--preset",
        "tiny",
        "--data_steps",
        "300",
        "--updates",
        "4",
        "--batch_size",
        "4",
        "--seq_len",
        "8",
        "--start_states",
        "4",
        "--logdir",
        str(logdir),
        "--quiet",
    ]
    assert cli_main(pretrain) == 0
    bundle = load_bundle(logdir / "bundle")
    assert bundle.task_names == ["cartpole-balance", "reacher-easy"]
    dataset = json.loads((logdir / "dataset.json").read_text())
    assert dataset["tasks"]["cartpole-balance"]["behaviour"] == "mixed"
    assert dataset["tasks"]["reacher-easy"]["behaviour"].startswith("random")
    assert cli_main([*pretrain[:-3], "--updates", "6", "--logdir", str(logdir), "--quiet"]) == 0  # resumes
    assert load_bundle(logdir / "bundle").info["updates"] == 6
    out = tmp_path / "policy"
    train = ["train", "--dream", str(logdir / "bundle"), "--learner", "pwm", "--pwm-preset", "tiny"]
    learn = [*train, "--task", "reacher-easy", "--dream-updates", "3", "--out", str(out), "--quiet"]
    assert cli_main(learn) == 0
    policy = load_bundle(out)
    assert policy.policy_config is not None and policy.policy_config["task"] == "reacher-easy"
    assert policy.task_names == bundle.task_names
    assert cli_main(["eval", str(out), "--episodes", "1"]) == 0
    # the task's figures recorded in the multi-task bundle the policy learned in, and its card
    evaluate = ["evaluate", str(logdir / "bundle"), "--task", "reacher-easy", "--episodes", "2"]
    assert cli_main([*evaluate, "--horizon", "5", "--context", "2"]) == 0
    assert set(json.loads((logdir / "bundle" / "openloop.json").read_text())["tasks"]) == {"reacher-easy"}
    record = ["eval", str(out), "--episodes", "1", "--record", "pwm_dream", "--record-in"]
    assert cli_main([*record, str(logdir / "bundle")]) == 0
    baseline = ["eval", str(logdir / "bundle"), "--task", "reacher-easy", "--random", "--episodes", "1"]
    assert cli_main([*baseline, "--record", "random"]) == 0
    results = json.loads((logdir / "bundle" / "transfer.json").read_text())["results"]
    assert set(results) == {"reacher-easy/pwm_dream", "reacher-easy/random"}
    assert results["reacher-easy/pwm_dream"]["task"] == "reacher-easy"
    card = (logdir / "bundle" / "README.md").read_text()
    assert "| `reacher-easy` | PWM policy (reacher-easy) |" in card and "| data behaviour |" in card
    assert "| `reacher-easy` | " in card.split("## Fidelity")[1]  # the task's open-loop row
    assert cli_main([*record, "CartPole"]) == 2  # another model: refused, nothing written there
    assert cli_main(["eval", str(out), "--record-in", str(logdir / "bundle")]) == 2  # no --record
    replay = [
        "--dream-replay",
        str(logdir / "replay" / "reacher-easy"),
        "--batch_size",
        "2",
        "--seq_len",
        "8",
    ]
    starts = [
        *train,
        "--task",
        "reacher-easy",
        "--dream-updates",
        "2",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    ]
    assert cli_main([*starts, *replay]) == 0  # imagination from posterior states of the task's data
    assert load_bundle(tmp_path / "r").info["dream_training"]["starts"] == "replay"
    assert cli_main(["eval", str(out), "--episodes", "1", "--task", "cartpole-balance"]) == 2  # not its task
    assert cli_main([*train, "--dream-updates", "1", "--out", str(tmp_path / "x")]) == 2  # no --task
    # DreamerV2's actor-critic in the same task's dream, for comparison
    dreamer = ["train", "--dream", str(logdir / "bundle"), "--preset", "tiny", "--dream-pool", "8"]
    assert cli_main([*dreamer, "--dream-updates", "1", "--quiet"]) == 2  # no --task
    dv2 = tmp_path / "dv2"
    assert (
        cli_main([*dreamer, "--task", "reacher-easy", "--dream-updates", "2", "--out", str(dv2), "--quiet"])
        == 0
    )
    assert load_bundle(dv2).policy_config["task"] == "reacher-easy"  # type: ignore[index]
    assert cli_main(["eval", str(dv2), "--episodes", "1"]) == 0
    assert cli_main(["add-data", str(logdir), "--policy", str(out), "--steps", "5"]) == 2  # not yet
    quickstart = ["quickstart", "--env", str(logdir / "bundle"), "--out", str(tmp_path / "q"), "--quiet"]
    assert cli_main(quickstart) == 2  # which task: refused before any work
    assert cli_main([*quickstart, "--task", "walker-walk"]) == 2  # not one of its tasks
    # SB3 in the task's dream and in its real env, the baselines of a comparison
    from agents.sb3 import evaluate_in_real, train_in_dream

    kwargs = {"n_steps": 16, "batch_size": 32, "n_epochs": 1}
    ppo = train_in_dream(
        logdir / "bundle", total_timesteps=64, num_envs=4, task="reacher-easy", algo_kwargs=kwargs
    )
    assert ppo.action_space.shape == (2,)
    assert len(evaluate_in_real(ppo, logdir / "bundle", episodes=1, task="reacher-easy").returns) == 1
