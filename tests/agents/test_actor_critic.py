"""DreamerV2 behaviour learning: lambda-returns by hand, gradients where they belong, target schedule,
policies in bundles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from agents.dreamerv2 import ActorCritic, agent_from_bundle, agent_preset, lambda_returns, policy_for_bundle
from agents.dreamerv2.networks import TanhNormalPolicy
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
    _, _, reward, _ = agent.imagine(wm, start, 5)
    # The return depends on the actor only through the actions fed to the world model.
    reward[1:].sum().backward()
    grads = [p.grad for p in agent.actor.parameters() if p.grad is not None]
    assert len(grads) == len(list(agent.actor.parameters()))
    assert sum(float(g.abs().sum()) for g in grads) > 0


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
