"""DreamerV2 behaviour learning: lambda-returns by hand, gradients where they belong, target schedule,
policies in bundles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from agents.dreamerv2 import ActorCritic, agent_from_bundle, agent_preset, lambda_returns, policy_for_bundle
from agents.dreamerv2.networks import Actor, TanhNormalPolicy, TruncNormalPolicy
from agents.onnx_policy import erfinv
from wmsim.bundle import encode_start_states, load_bundle, save_bundle
from wmsim.config import model_preset
from wmsim.envs import EnvSpec
from wmsim.world_model import IOSpec, WorldModel


def test_lambda_returns_match_hand_computation_with_a_terminal() -> None:
    # Trajectory s0..s3; rewards/discounts predicted at s1..s3; s2 is terminal (discount 0).
    reward = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    value = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    discount = torch.tensor([[0.9], [0.9], [0.0], [0.9]])
    lam = 0.5
    r2 = 2.0 + 0.0 * ((1 - lam) * 30.0 + lam * (3.0 + 0.9 * 40.0))  # the terminal cuts everything after
    r1 = 1.0 + 0.9 * ((1 - lam) * 20.0 + lam * r2)
    expected = [r1, r2, 3.0 + 0.9 * 40.0]
    # R_0 uses (r_1, c_1, v_1, R_1); R_1 uses (r_2, c_2, v_2, R_2); R_2 = r_3 + c_3 * v_3.
    got = lambda_returns(reward, value, discount, lam)[:, 0]
    assert got.shape == (3,)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    # lambda = 0 is the one-step TD target, lambda = 1 the discounted Monte-Carlo return + bootstrap.
    td = lambda_returns(reward, value, discount, 0.0)[:, 0]
    assert torch.allclose(td, torch.tensor([1.0 + 0.9 * 20.0, 2.0, 3.0 + 0.9 * 40.0]))
    mc = lambda_returns(reward, value, discount, 1.0)[:, 0]
    assert torch.allclose(mc, torch.tensor([1.0 + 0.9 * 2.0, 2.0, 3.0 + 0.9 * 40.0]))


def _setup(discrete: bool, grad: str) -> tuple[WorldModel, ActorCritic, object]:
    torch.manual_seed(0)
    io = IOSpec((4,), False, 2 if discrete else 1, discrete)
    wm = WorldModel(model_preset("tiny"), io)
    config = dataclasses.replace(agent_preset("tiny"), actor_grad=grad, slow_target_update=3)
    agent = ActorCritic(config, wm)
    batch = {
        "obs": torch.randn(2, 4, 4),
        "action": torch.randn(2, 4, io.action_size),
        "is_first": torch.zeros(2, 4, dtype=torch.bool),
    }
    batch["is_first"][:, 0] = True
    posts, _ = wm.observe(batch)
    return wm, agent, posts


@pytest.mark.parametrize(("discrete", "grad"), [(True, "reinforce"), (False, "dynamics"), (True, "both")])
def test_actor_critic_update_changes_only_actor_and_critic(discrete: bool, grad: str) -> None:
    wm, agent, posts = _setup(discrete, grad)
    wm_before = {k: v.clone() for k, v in wm.state_dict().items()}
    actor_before = [p.clone() for p in agent.actor.parameters()]
    critic_before = [p.clone() for p in agent.critic.parameters()]
    target_before = [p.clone() for p in agent.target_critic.parameters()]
    metrics = agent.train_step(wm, posts)  # type: ignore[arg-type]
    assert all(torch.isfinite(v) for v in metrics.values())
    for name, value in wm.state_dict().items():
        assert torch.equal(value, wm_before[name]), f"world model parameter {name} changed"
    assert all(p.grad is None for p in wm.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(agent.actor.parameters(), actor_before, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(agent.critic.parameters(), critic_before, strict=True))
    # The slow target moves only on its schedule (every 3 updates here).
    assert all(
        torch.equal(a, b) for a, b in zip(agent.target_critic.parameters(), target_before, strict=True)
    )
    agent.train_step(wm, posts)  # type: ignore[arg-type]
    agent.train_step(wm, posts)  # type: ignore[arg-type]
    for target, critic in zip(agent.target_critic.parameters(), agent.critic.parameters(), strict=True):
        assert torch.equal(target, critic)


def test_dynamics_backprop_reaches_the_actor_through_the_world_model() -> None:
    wm, agent, posts = _setup(False, "dynamics")
    start = posts.map(lambda t: t.detach().reshape(-1, *t.shape[2:]))  # type: ignore[attr-defined]
    _, _, _, reward, _ = agent.imagine(wm, start, 5)
    # The return depends on the actor only through the actions fed to the world model.
    reward[1:].sum().backward()
    grads = [p.grad for p in agent.actor.parameters() if p.grad is not None]
    assert len(grads) == len(list(agent.actor.parameters()))
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize(("discrete", "grad"), [(True, "reinforce"), (False, "dynamics")])
def test_imagination_reads_the_heads_once_and_matches_stepping_the_world_model(
    discrete: bool, grad: str
) -> None:
    # The fast imagination runs the latent transition per step and the reward and discount heads once
    # on the whole trajectory; it must give what WorldModel.step (the dreams' transition, heads
    # inside) gives step by step with the same random numbers, values and gradients alike.
    wm, agent, posts = _setup(discrete, grad)
    start = posts.map(lambda t: t.detach().reshape(-1, *t.shape[2:]))  # type: ignore[attr-defined]
    torch.manual_seed(5)
    feat, _, _, reward, discount = agent.imagine(wm, start, 4)
    torch.manual_seed(5)
    state, feats, rewards, conts = start, [start.feat], [], []
    for _ in range(4):
        sampled = agent.actor(state.feat.detach()).sample()
        step_action = agent.to_model_action(sampled if grad == "dynamics" else sampled.detach())
        state, r, c = wm.step(state, step_action)
        feats.append(state.feat)
        rewards.append(r)
        conts.append(c)
    gamma = wm.config.discount
    torch.testing.assert_close(feat, torch.stack(feats), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(reward[1:], torch.stack(rewards), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(discount[1:], torch.stack(conts) * gamma, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(discount[0], wm.continue_prob(start.feat) * gamma)
    assert torch.equal(reward[0], torch.zeros_like(reward[0]))
    if grad == "dynamics":  # the returns' gradient reaches the actor through the heads read at the end
        grads = torch.autograd.grad(reward[1:].sum(), list(agent.actor.parameters()), allow_unused=True)
        expected = torch.autograd.grad(torch.stack(rewards).sum(), list(agent.actor.parameters()))
        for got, want in zip(grads, expected, strict=True):
            assert got is not None
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_imagination_weights_include_the_current_discount_and_the_data_decides_the_first() -> None:
    # R_t values the action taken at s_t, so its weight is prod_{k<=t} c_k; c_0 is the data's
    # is_terminal. A start state the data marks terminal must not train the actor or the critic.
    wm, agent, posts = _setup(True, "reinforce")
    start = posts.map(lambda t: t.detach().reshape(-1, *t.shape[2:]))  # type: ignore[attr-defined]
    is_terminal = torch.tensor([True, False] * (start.deter.shape[0] // 2))
    _, _, _, _, discount = agent.imagine(wm, start, 3, is_terminal)
    gamma = wm.config.discount
    assert torch.equal(discount[0], (~is_terminal).float() * gamma)
    assert not torch.equal(discount[1:], torch.zeros_like(discount[1:]))
    # With every start terminal the update has nothing to learn from: zero losses and gradients.
    ones = torch.ones(posts.deter.shape[:2], dtype=torch.bool)
    metrics = agent.train_step(wm, posts, ones)  # type: ignore[arg-type]
    assert metrics["actor_loss"] == 0 and metrics["critic_loss"] == 0
    grads = [p.grad for p in [*agent.actor.parameters(), *agent.critic.parameters()]]
    assert all(g is not None and not g.any() for g in grads)
    # A start state the data marks as going on trains both.
    agent.train_step(wm, posts, ~ones)  # type: ignore[arg-type]
    assert any(p.grad is not None and p.grad.any() for p in agent.actor.parameters())


def test_the_learners_own_discount_replaces_the_world_models() -> None:
    wm, agent, posts = _setup(True, "reinforce")
    start = posts.map(lambda t: t.detach().reshape(-1, *t.shape[2:]))  # type: ignore[attr-defined]
    is_terminal = torch.zeros(start.deter.shape[0], dtype=torch.bool)
    torch.manual_seed(3)
    _, _, _, _, own = agent.imagine(wm, start, 3, is_terminal)
    assert torch.allclose(own[0], torch.full_like(own[0], wm.config.discount))
    agent.config = dataclasses.replace(agent.config, discount=0.5)
    torch.manual_seed(3)
    _, _, _, _, half = agent.imagine(wm, start, 3, is_terminal)
    # the same continue probabilities, scaled by the learner's gamma instead of the model's
    assert torch.allclose(half, own / wm.config.discount * 0.5)
    with pytest.raises(ValueError, match="discount"):
        dataclasses.replace(agent.config, discount=1.5)


def test_trunc_normal_matches_dreamerv2s_continuous_actor() -> None:
    torch.manual_seed(0)
    actor = Actor(8, 2, False, 1, 16, min_std=0.1)
    policy = actor(torch.randn(4, 8))
    assert isinstance(policy, TruncNormalPolicy)
    # Mean tanh(x), std 2 sigmoid(y / 2) + 0.1: between 0.1 and 2.1.
    assert policy.mean.abs().max() < 1 and policy.std.min() > 0.1 and policy.std.max() < 2.1
    wide = TruncNormalPolicy(torch.full((20000, 1), 0.8), torch.full((20000, 1), 1.0))
    sample = wide.sample()
    assert sample.abs().max() < 1  # truncated to [-1, 1] ...
    assert (sample > 0.99).float().mean() < 0.01  # ... not clipped: no mass piles up at the bound
    # The mean of N(0.8, 1) truncated to [-1, 1] is 0.2256 (scipy.stats.truncnorm).
    assert sample.mean().item() == pytest.approx(0.2256, abs=0.015)
    # Density at 0: N(0; 0.8, 1) / Z with Z = Phi(0.2) - Phi(-1.8) = 0.5434.
    assert wide.log_prob(torch.zeros(1, 1))[0].exp().item() == pytest.approx(0.2897 / 0.5434, rel=1e-3)
    # Closed-form entropy agrees with a Monte-Carlo estimate.
    assert wide.entropy()[0].item() == pytest.approx(-wide.log_prob(sample).mean().item(), abs=0.02)
    # Reparameterised: the sample carries gradients to the mean and the std.
    mean = torch.zeros(3, 1, requires_grad=True)
    std = torch.ones(3, 1, requires_grad=True)
    TruncNormalPolicy(torch.tanh(mean), std).sample().sum().backward()
    assert mean.grad is not None and std.grad is not None and mean.grad.abs().sum() > 0


def test_onnx_friendly_erfinv_matches_torch() -> None:
    x = torch.linspace(-0.999999, 0.999999, 10001)
    assert torch.allclose(erfinv(x), torch.erfinv(x), atol=1e-6, rtol=1e-5)


def test_old_continuous_policies_load_as_tanh_normal(tmp_path: Path) -> None:
    wm, agent, _ = _setup(False, "dynamics")
    tensors, config = policy_for_bundle(agent)
    del config["actor_critic"]["actor_dist"]  # as bundles written before the truncated normal
    starts = encode_start_states(wm, torch.randn(3, 4))
    spaces: dict[str, dict] = {"observation": {}, "action": {}}
    save_bundle(tmp_path / "b", wm, EnvSpec.from_id("Pendulum-v1"), spaces, starts, policy=(tensors, config))
    loaded = agent_from_bundle(load_bundle(tmp_path / "b"))
    assert isinstance(loaded.actor(torch.randn(2, wm.config.rssm.feat_size)), TanhNormalPolicy)


def test_tanh_normal_log_prob_and_bounds() -> None:
    torch.manual_seed(0)
    policy = TanhNormalPolicy(torch.zeros(5000, 1), torch.full((5000, 1), 0.5))
    action = policy.sample()
    assert action.abs().max() < 1
    # Density of tanh(N(0, 0.5)) at 0 is N(0; 0, 0.5) = 0.798.
    assert policy.log_prob(torch.zeros(1, 1))[0].exp().item() == pytest.approx(0.7979, rel=1e-3)


def test_policy_round_trips_through_the_bundle(tmp_path: Path) -> None:
    wm, agent, _ = _setup(False, "dynamics")
    starts = encode_start_states(wm, torch.randn(3, 4))
    spaces: dict[str, dict] = {"observation": {}, "action": {}}
    save_bundle(
        tmp_path / "b", wm, EnvSpec.from_id("Pendulum-v1"), spaces, starts, policy=policy_for_bundle(agent)
    )
    bundle = load_bundle(tmp_path / "b")
    loaded = agent_from_bundle(bundle)
    for a, b in zip(loaded.actor.parameters(), agent.actor.parameters(), strict=True):
        assert torch.equal(a, b)
    save_bundle(tmp_path / "c", wm, EnvSpec.from_id("Pendulum-v1"), spaces, starts)
    with pytest.raises(ValueError, match="holds no policy"):
        agent_from_bundle(load_bundle(tmp_path / "c"))


@pytest.mark.parametrize(("discrete", "grad"), [(True, "reinforce"), (False, "dynamics")])
def test_actor_critic_update_is_the_same_with_the_one_hot_gather(discrete: bool, grad: str) -> None:
    import copy

    from wmsim.nn import one_hot_gather

    wm, agent, posts = _setup(discrete, grad)
    twin = copy.deepcopy(agent)
    torch.manual_seed(3)
    with one_hot_gather():
        fast = agent.train_step(wm, posts)  # type: ignore[arg-type]
    torch.manual_seed(3)
    plain = twin.train_step(wm, posts)  # type: ignore[arg-type]
    for key in ("actor_loss", "critic_loss", "imag_return", "actor_grad_norm", "critic_grad_norm"):
        torch.testing.assert_close(fast[key], plain[key], atol=1e-5, rtol=1e-4)
    for a, b in zip(agent.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("discrete", "grad"), [(True, "reinforce"), (False, "dynamics")])
def test_actor_critic_update_runs_under_bf16_autocast(discrete: bool, grad: str) -> None:
    # precision="auto" picks bf16 for image models on CPUs with native bfloat16: the continuous
    # actor's inverse-CDF sampling must run there too (in float32), and the update stay finite.
    wm, agent, posts = _setup(discrete, grad)
    agent.precision = "bf16"
    metrics = agent.train_step(wm, posts)  # type: ignore[arg-type]
    assert all(torch.isfinite(v) for v in metrics.values()), metrics
    with torch.autocast("cpu", torch.bfloat16):
        action = agent.actor(posts.feat.reshape(-1, posts.feat.shape[-1])).sample()
    assert torch.isfinite(action).all()
    if not discrete:
        assert action.dtype == torch.float32
