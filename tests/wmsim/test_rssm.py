"""The RSSM's math: KL balancing, straight-through sampling, the GRU cell, resets at is_first."""

from __future__ import annotations

import pytest
import torch

from wmsim.config import RSSMConfig
from wmsim.rssm import RSSM, categorical_kl, kl_balance_loss, sample_one_hot


def _kl_reference(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    p = torch.distributions.Categorical(logits=p_logits)
    q = torch.distributions.Categorical(logits=q_logits)
    return torch.distributions.kl_divergence(p, q).sum(-1)


def test_categorical_kl_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    post, prior = torch.randn(5, 3, 7), torch.randn(5, 3, 7)
    assert torch.allclose(categorical_kl(post, prior), _kl_reference(post, prior), atol=1e-5)
    assert torch.allclose(categorical_kl(post, post), torch.zeros(5), atol=1e-6)


@pytest.mark.parametrize("balance", [0.8, 0.5, 1.0])
def test_kl_balance_value_matches_formula(balance: float) -> None:
    torch.manual_seed(1)
    post, prior = torch.randn(4, 6, 8, 8), torch.randn(4, 6, 8, 8)
    loss, kl = kl_balance_loss(post, prior, balance=balance, free=0.0)
    # Both terms have the value of KL(post || prior); only their gradients differ.
    expected = _kl_reference(post, prior).mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    assert kl.shape == (4, 6)


def test_kl_balance_gradients_follow_the_stop_gradients() -> None:
    torch.manual_seed(2)
    post0, prior0 = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    balance = 0.8

    def grads(b: float) -> tuple[torch.Tensor, torch.Tensor]:
        post = post0.clone().requires_grad_()
        prior = prior0.clone().requires_grad_()
        loss, _ = kl_balance_loss(post, prior, balance=b, free=0.0)
        loss.backward()
        assert post.grad is not None and prior.grad is not None
        return post.grad, prior.grad

    post_grad, prior_grad = grads(balance)
    # Reference: the full KL gradient split by the balance weights.
    post_ref = post0.clone().requires_grad_()
    prior_ref = prior0.clone().requires_grad_()
    _kl_reference(post_ref, prior_ref).mean().backward()
    assert post_ref.grad is not None and prior_ref.grad is not None
    assert torch.allclose(prior_grad, balance * prior_ref.grad, atol=1e-6)
    assert torch.allclose(post_grad, (1 - balance) * post_ref.grad, atol=1e-6)
    # balance = 1: the posterior receives no gradient at all from the KL.
    post_grad_1, _ = grads(1.0)
    assert torch.count_nonzero(post_grad_1) == 0


def test_free_nats_clip_each_term() -> None:
    post = torch.zeros(2, 4, 4)
    prior = torch.zeros(2, 4, 4, requires_grad=True)
    loss, _ = kl_balance_loss(post, prior, balance=0.8, free=1.0)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert prior.grad is not None and torch.count_nonzero(prior.grad) == 0  # below the free nats


def test_straight_through_sample_is_one_hot_and_passes_gradients() -> None:
    torch.manual_seed(3)
    logits = torch.randn(64, 32, 32, requires_grad=True)
    sample = sample_one_hot(logits)
    one_hot = torch.nn.functional.one_hot(sample.detach().argmax(-1), 32).float()
    assert torch.allclose(sample.detach(), one_hot, atol=1e-6)
    weights = torch.randn(32)
    (sample * weights).sum().backward()
    assert logits.grad is not None
    probs = torch.softmax(logits.detach(), -1)
    # d/dlogits of sum(probs * w): the softmax Jacobian applied to w.
    expected = probs * (weights - (probs * weights).sum(-1, keepdim=True))
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_sampling_follows_the_distribution_and_noise_fixes_it() -> None:
    torch.manual_seed(4)
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1])).expand(20000, 1, 3)
    freq = sample_one_hot(logits).detach().mean((0, 1))
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.015)
    noise = torch.rand(20000, 1, 3)
    assert torch.equal(sample_one_hot(logits, noise), sample_one_hot(logits, noise))


def test_observe_resets_state_at_is_first() -> None:
    torch.manual_seed(5)
    rssm = RSSM(RSSMConfig(deter=16, hidden=16, stoch=4, classes=4), action_size=2, embed_size=8)
    embed, action = torch.randn(2, 6, 8), torch.randn(2, 6, 2)
    is_first = torch.zeros(2, 6, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[0, 3] = True
    posts, _ = rssm.observe(embed, action, is_first, sample=False)
    # Sequence 0 restarts at t=3: its states from there equal a fresh filter of steps 3..5.
    fresh, _ = rssm.observe(embed[:1, 3:], action[:1, 3:], torch.ones(1, 3, dtype=torch.bool), sample=False)
    assert torch.allclose(posts.deter[0, 3], fresh.deter[0, 0], atol=1e-6)
    assert not torch.allclose(posts.deter[1, 3], fresh.deter[0, 0], atol=1e-3)
    assert posts.feat.shape == (2, 6, 16 + 16)


def test_img_step_is_batched_and_differentiable_in_the_action() -> None:
    torch.manual_seed(6)
    rssm = RSSM(RSSMConfig(deter=16, hidden=16, stoch=4, classes=4), action_size=3, embed_size=8)
    state = rssm.initial(4096)
    action = torch.randn(4096, 3, requires_grad=True)
    nxt = rssm.img_step(state, action)
    assert nxt.deter.shape == (4096, 16) and nxt.stoch.shape == (4096, 4, 4)
    nxt.feat.sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0


def test_samples_without_noise_follow_the_categorical() -> None:
    torch.manual_seed(0)
    probs = torch.tensor([0.05, 0.6, 0.0, 0.35])
    logits = probs.clamp(min=1e-12).log().expand(200_000, 3, 4)  # 3 variables of 4 classes
    sample = sample_one_hot(logits)
    assert torch.allclose(sample.detach().sum(-1), torch.ones(200_000, 3))  # one-hot rows
    assert not sample.detach()[..., 2].any()  # a class of probability 0 is never drawn
    frequency = sample.detach().mean(0)
    assert torch.allclose(frequency, probs.expand(3, 4), atol=0.005), frequency
