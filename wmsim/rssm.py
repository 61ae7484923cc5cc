"""The recurrent state-space model of DreamerV2 with discrete (categorical) latents.

Notation, as in the paper (section 2.1):

- recurrent model     ``deter_t = f(deter_{t-1}, stoch_{t-1}, action_{t-1})``  (layer-normed GRU)
- transition (prior)  ``stoch_t ~ p(stoch_t | deter_t)``                    (:meth:`RSSM.img_step`)
- representation      ``stoch_t ~ q(stoch_t | deter_t, embed_t)``           (:meth:`RSSM.obs_step`)

``stoch`` holds ``S`` categorical variables of ``K`` classes, sampled one-hot with straight-through
gradients. The prior step is the *latent transition* shared by the dream environments and the
agent's imagination: it is written for large batches (no host syncs, no Python loop over the batch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import RSSMConfig
from .nn import LayerNormGRUCell, SegmentLinear


class State(NamedTuple):
    """A batch of model states. ``deter: (..., D)``, ``stoch: (..., S, K)`` one-hot,
    ``logits: (..., S, K)`` of the distribution ``stoch`` was drawn from."""

    deter: torch.Tensor
    stoch: torch.Tensor
    logits: torch.Tensor

    @property
    def feat(self) -> torch.Tensor:
        """Model-state features ``concat(deter, flat(stoch))``: ``(..., D + S*K)``."""
        return torch.cat([self.deter, self.stoch.flatten(-2)], -1)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
        """Apply ``fn`` to each field (indexing, detaching, moving devices)."""
        return State(fn(self.deter), fn(self.stoch), fn(self.logits))

    @staticmethod
    def stack(states: list[State], dim: int) -> State:
        """Stack a list of states along a new axis ``dim``."""
        return State(*(torch.stack(parts, dim) for parts in zip(*states, strict=True)))


def sample_one_hot(logits: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Draw one-hot samples from categoricals with straight-through gradients.

    ``logits: (..., K)``; ``noise``: optional uniform(0, 1) numbers of the same shape (the Gumbel-max
    trick turns them into a sample, so a caller that supplies them, as the dream environments and the
    exported graphs do, gets a deterministic result). Without ``noise`` the sample is drawn by
    inversion, from one uniform number per categorical instead of ``K``: the first class whose
    cumulative probability exceeds it.
    Returns ``one_hot + probs - sg(probs)``: forward value one-hot, gradient of the probabilities.
    """
    probs = torch.softmax(logits, -1)
    if noise is None:
        with torch.no_grad():
            uniform = torch.rand_like(probs[..., :1])
            below = probs.cumsum(-1) <= uniform * probs.sum(-1, keepdim=True)
            index = below.sum(-1).clamp(max=logits.shape[-1] - 1)
    else:
        gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1.0 - 1e-7)))
        index = (logits + gumbel).argmax(-1)
    one_hot = F.one_hot(index, logits.shape[-1]).to(logits.dtype)
    return one_hot + probs - probs.detach()


def mode_one_hot(logits: torch.Tensor) -> torch.Tensor:
    """The most likely class of each categorical, one-hot, with straight-through gradients."""
    one_hot = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    probs = torch.softmax(logits, -1)
    return one_hot + probs - probs.detach()


def categorical_kl(lhs_logits: torch.Tensor, rhs_logits: torch.Tensor) -> torch.Tensor:
    """``KL(lhs || rhs)`` of independent categoricals, summed over the variables.

    ``(..., S, K), (..., S, K) -> (...)``.
    """
    lhs_log = torch.log_softmax(lhs_logits, -1)
    rhs_log = torch.log_softmax(rhs_logits, -1)
    return (lhs_log.exp() * (lhs_log - rhs_log)).sum((-2, -1))


def kl_balance_loss(
    post_logits: torch.Tensor, prior_logits: torch.Tensor, balance: float, free: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DreamerV2's KL balancing (algorithm 2) with averaged free nats.

    ``loss = balance * max(mean KL(sg(post) || prior), free)
           + (1 - balance) * max(mean KL(post || sg(prior)), free)``

    The first term trains the prior towards the posterior, the second regularises the posterior
    towards the prior, with ``balance = 0.8`` favouring the prior. Returns ``(loss, kl)`` where ``kl``
    is the unbalanced ``KL(post || prior)`` per element ``(...)`` for logging.
    """
    kl_prior = categorical_kl(post_logits.detach(), prior_logits).mean()
    kl_post = categorical_kl(post_logits, prior_logits.detach()).mean()
    free_t = torch.as_tensor(free, dtype=kl_prior.dtype, device=kl_prior.device)
    loss = balance * torch.maximum(kl_prior, free_t) + (1.0 - balance) * torch.maximum(kl_post, free_t)
    with torch.no_grad():
        kl = categorical_kl(post_logits, prior_logits)
    return loss, kl


class RSSM(nn.Module):
    """DreamerV2's RSSM. ``action_size`` is the one-hot size for discrete actions or the dimension of a
    continuous action; ``embed_size`` the length of the encoder's output."""

    def __init__(self, config: RSSMConfig, action_size: int, embed_size: int) -> None:
        super().__init__()
        self.config = config
        c = config
        segments = ((c.stoch_size, c.classes), (action_size, 0))
        self.img_in = nn.Sequential(SegmentLinear(c.stoch_size + action_size, c.hidden, segments), nn.ELU())
        self.gru = LayerNormGRUCell(c.hidden, c.deter, norm=c.norm_gru)
        self.img_out = nn.Sequential(
            nn.Linear(c.deter, c.hidden), nn.ELU(), nn.Linear(c.hidden, c.stoch_size)
        )
        self.obs_out = nn.Sequential(
            nn.Linear(c.deter + embed_size, c.hidden), nn.ELU(), nn.Linear(c.hidden, c.stoch_size)
        )

    def initial(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The all-zero state every episode starts from: ``deter (B, D)``, ``stoch (B, S, K)``."""
        c = self.config
        device = device if device is not None else self.gru.linear.weight.device
        deter = torch.zeros(batch_size, c.deter, device=device)
        stoch = torch.zeros(batch_size, c.stoch, c.classes, device=device)
        return State(deter, stoch, torch.zeros_like(stoch))

    def _logits(self, flat_logits: torch.Tensor) -> torch.Tensor:
        return flat_logits.unflatten(-1, (self.config.stoch, self.config.classes))

    def img_step(
        self, prev: State, action: torch.Tensor, noise: torch.Tensor | None = None, sample: bool = True
    ) -> State:
        """The latent transition (prior): ``p(deter_t, stoch_t | deter_{t-1}, stoch_{t-1}, action_{t-1})``.

        ``prev: State (B, ...)``, ``action: (B, A)``, ``noise``: optional uniform ``(B, S, K)`` that fixes
        the sample. ``sample=False`` takes each categorical's mode instead of sampling.
        """
        hidden = self.img_in(torch.cat([prev.stoch.flatten(-2), action], -1))
        deter = self.gru(hidden, prev.deter)
        logits = self._logits(self.img_out(deter))
        stoch = sample_one_hot(logits, noise) if sample else mode_one_hot(logits)
        return State(deter, stoch, logits)

    def obs_step(
        self,
        prev: State,
        prev_action: torch.Tensor,
        embed: torch.Tensor,
        is_first: torch.Tensor,
        sample: bool = True,
        noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[State, State]:
        """One filtering step: the prior from the transition, then the posterior that also sees the
        observation's ``embed (B, E)``. Where ``is_first (B,)`` is true the previous state and action are
        reset to zero, so sequences may cross episode boundaries. ``noise``: optional uniform
        ``(prior_noise, post_noise)``, each ``(B, S, K)``, that fix the samples. Returns ``(post, prior)``."""
        prior_noise, post_noise = noise if noise is not None else (None, None)
        keep = (~is_first.bool()).to(prev.deter.dtype).unsqueeze(-1)
        prev = State(prev.deter * keep, prev.stoch * keep.unsqueeze(-1), prev.logits)
        prior = self.img_step(prev, prev_action * keep, noise=prior_noise, sample=sample)
        logits = self._logits(self.obs_out(torch.cat([prior.deter, embed], -1)))
        stoch = sample_one_hot(logits, post_noise) if sample else mode_one_hot(logits)
        return State(prior.deter, stoch, logits), prior

    def observe(
        self,
        embed: torch.Tensor,
        action: torch.Tensor,
        is_first: torch.Tensor,
        state: State | None = None,
        sample: bool = True,
    ) -> tuple[State, State]:
        """Filter a batch of sequences: ``embed (B, T, E)``, ``action (B, T, A)`` (the action that led
        to each step), ``is_first (B, T)``. Returns ``(posts, priors)`` with fields ``(B, T, ...)``."""
        if state is None:
            state = self.initial(embed.shape[0], embed.device)
        posts, priors = [], []
        for t in range(embed.shape[1]):
            state, prior = self.obs_step(state, action[:, t], embed[:, t], is_first[:, t], sample)
            posts.append(state)
            priors.append(prior)
        return State.stack(posts, 1), State.stack(priors, 1)

    def imagine(self, start: State, actions: torch.Tensor, sample: bool = True) -> State:
        """Open-loop prior rollout from ``start (B, ...)`` under given ``actions (B, H, A)``.
        Returns the ``H`` predicted states, fields ``(B, H, ...)``."""
        states = []
        state = start
        for t in range(actions.shape[1]):
            state = self.img_step(state, actions[:, t], sample=sample)
            states.append(state)
        return State.stack(states, 1)
