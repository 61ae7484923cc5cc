"""The actor and the critic: MLPs on the model-state features ``(..., F)``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wmsim.nn import MLP, Segments, init_glorot_

from .config import ACTOR_DISTS


class OneHotPolicy:
    """A categorical over ``A`` actions, sampled one-hot with straight-through gradients."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        self.log_probs = torch.log_softmax(logits, -1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        probs = self.log_probs.detach().exp().reshape(-1, self.logits.shape[-1])
        index = torch.multinomial(probs, 1, generator=generator)
        one_hot = F.one_hot(index.reshape(self.logits.shape[:-1]), self.logits.shape[-1]).to(
            self.logits.dtype
        )
        probs = self.log_probs.exp()
        return one_hot + probs - probs.detach()

    def mode(self) -> torch.Tensor:
        return F.one_hot(self.logits.argmax(-1), self.logits.shape[-1]).to(self.logits.dtype)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return (self.log_probs * action.detach()).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.log_probs.exp() * self.log_probs).sum(-1)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The standard normal CDF from ``erf`` (which, unlike ``torch.special.ndtr``, exports to ONNX)."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class TruncNormalPolicy:
    """DreamerV2's continuous policy: a normal over each action dimension truncated to ``[-1, 1]``.

    ``mean, std: (..., A)``. Samples are reparameterised through the inverse CDF and kept ``1e-6``
    inside the bounds with straight-through gradients (as the official ``TruncNormalDist``); the mode
    is the mean (it lies in the bounds); log-probabilities and entropies are exact.
    """

    CLIP = 1e-6

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        # float32 whatever the autocast: the inverse CDF has no bfloat16 kernel, and bfloat16's 8 bits
        # of mantissa would put the samples of a narrow policy on a coarse grid.
        self.mean, self.std = mean.float(), std.float()
        self.alpha, self.beta = (-1.0 - mean) / std, (1.0 - mean) / std
        self.cdf_low = _normal_cdf(self.alpha)
        # The mean lies in (-1, 1), so at least half of the normal's mass is inside: Z >= ~0.5.
        self.mass = _normal_cdf(self.beta) - self.cdf_low

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        uniform = torch.rand(
            self.mean.shape, dtype=self.mean.dtype, device=self.mean.device, generator=generator
        )
        prob = (self.cdf_low + uniform * self.mass).clamp(1e-7, 1.0 - 1e-7)
        action = self.mean + self.std * torch.special.ndtri(prob)
        clipped = action.clamp(-1.0 + self.CLIP, 1.0 - self.CLIP)
        return action + (clipped - action).detach()

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        z = (action - self.mean) / self.std
        log_density = -0.5 * z.pow(2) - self.std.log() - 0.5 * math.log(2 * math.pi) - self.mass.log()
        return log_density.sum(-1)

    def entropy(self) -> torch.Tensor:
        """``log(sqrt(2 pi e) std Z) + (alpha phi(alpha) - beta phi(beta)) / (2 Z)`` per dimension."""

        def phi(x: torch.Tensor) -> torch.Tensor:
            return torch.exp(-0.5 * x.pow(2)) / math.sqrt(2 * math.pi)

        edges = (self.alpha * phi(self.alpha) - self.beta * phi(self.beta)) / (2.0 * self.mass)
        per_dim = 0.5 * math.log(2 * math.pi * math.e) + self.std.log() + self.mass.log() + edges
        return per_dim.sum(-1)


class TanhNormalPolicy:
    """A normal squashed by tanh into (-1, 1), reparameterised. ``std = (max - min) * sigmoid + min``.
    Only for policies saved before the truncated normal (bundles whose config has no ``actor_dist``)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.std = mean, std
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(
            self.mean.shape, dtype=self.mean.dtype, device=self.mean.device, generator=generator
        )
        pre = self.mean + self.std * noise
        action = torch.tanh(pre)
        self._last = (action, pre)
        return action

    def mode(self) -> torch.Tensor:
        return torch.tanh(self.mean)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        if self._last is not None and self._last[0] is action:
            pre = self._last[1]
        else:
            pre = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
        normal = -0.5 * ((pre - self.mean) / self.std).pow(2) - self.std.log() - 0.5 * math.log(2 * math.pi)
        return (normal - 2.0 * (math.log(2.0) - pre - F.softplus(-2.0 * pre))).sum(-1)

    def entropy(self) -> torch.Tensor:
        """A one-sample estimate (the squashed normal has no closed form), differentiable."""
        return -self.log_prob(self.sample())


Policy = OneHotPolicy | TruncNormalPolicy | TanhNormalPolicy


class Actor(nn.Module):
    """``feat (..., F) -> policy`` over ``action_size`` actions.

    ``dist``: ``onehot`` (discrete actions), ``trunc_normal`` (DreamerV2's continuous actor: mean
    ``tanh(x)``, std ``2 sigmoid(y / 2) + min_std``, truncated to [-1, 1]) or ``tanh_normal`` (the
    squashed normal of earlier wmsim versions); ``auto`` picks ``onehot`` or ``trunc_normal``.
    """

    def __init__(
        self,
        feat_size: int,
        action_size: int,
        discrete: bool,
        layers: int,
        units: int,
        min_std: float = 0.1,
        dist: str = "auto",
        segments: Segments | None = None,
    ) -> None:
        super().__init__()
        if dist == "auto":
            dist = "onehot" if discrete else "trunc_normal"
        if (dist == "onehot") != discrete or dist not in ACTOR_DISTS:
            kind = "discrete" if discrete else "continuous"
            raise ValueError(f"actor dist {dist!r} does not fit {kind} actions")
        self.discrete = discrete
        self.dist = dist
        self.min_std = min_std
        outputs = action_size if discrete else 2 * action_size
        self.net = init_glorot_(MLP(feat_size, outputs, layers, units, segments))

    def forward(self, feat: torch.Tensor) -> Policy:
        return self.policy(self.net(feat))

    def policy(self, out: torch.Tensor) -> Policy:
        """The policy of the network's raw outputs ``(..., A)`` (discrete) or ``(..., 2A)``."""
        if self.dist == "onehot":
            return OneHotPolicy(out)
        mean, std = out.chunk(2, -1)
        if self.dist == "trunc_normal":
            return TruncNormalPolicy(torch.tanh(mean), 2.0 * torch.sigmoid(std / 2.0) + self.min_std)
        std = (1.0 - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return TanhNormalPolicy(mean, std)


class Critic(nn.Module):
    """``feat (..., F) -> value (...)``, regressed on lambda-returns (unit-variance Gaussian, i.e. MSE).
    ``segments``: the features' layout (:class:`wmsim.nn.SegmentLinear`)."""

    def __init__(self, feat_size: int, layers: int, units: int, segments: Segments | None = None) -> None:
        super().__init__()
        self.net = init_glorot_(MLP(feat_size, 1, layers, units, segments))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat).squeeze(-1)
