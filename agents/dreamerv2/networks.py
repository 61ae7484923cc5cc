"""The actor and the critic: MLPs on the model-state features ``(..., F)``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wmsim.nn import MLP


class OneHotPolicy:
    """A categorical over ``A`` actions, sampled one-hot with straight-through gradients."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        self.log_probs = torch.log_softmax(logits, -1)

    def sample(self) -> torch.Tensor:
        index = torch.multinomial(self.log_probs.detach().exp().reshape(-1, self.logits.shape[-1]), 1)
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


class TanhNormalPolicy:
    """A normal squashed by tanh into (-1, 1), reparameterised. ``std = (max - min) * sigmoid + min``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.std = mean, std
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def sample(self) -> torch.Tensor:
        pre = self.mean + self.std * torch.randn_like(self.mean)
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


class Actor(nn.Module):
    """``feat (..., F) -> policy`` over ``action_size`` actions (one-hot categorical or tanh-normal)."""

    def __init__(
        self,
        feat_size: int,
        action_size: int,
        discrete: bool,
        layers: int,
        units: int,
        min_std: float = 0.1,
        max_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.discrete = discrete
        self.min_std, self.max_std = min_std, max_std
        self.net = MLP(feat_size, action_size if discrete else 2 * action_size, layers, units)

    def forward(self, feat: torch.Tensor) -> OneHotPolicy | TanhNormalPolicy:
        out = self.net(feat)
        if self.discrete:
            return OneHotPolicy(out)
        mean, std = out.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return TanhNormalPolicy(mean, std)


class Critic(nn.Module):
    """``feat (..., F) -> value (...)``, regressed on lambda-returns (unit-variance Gaussian, i.e. MSE)."""

    def __init__(self, feat_size: int, layers: int, units: int) -> None:
        super().__init__()
        self.net = MLP(feat_size, 1, layers, units)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat).squeeze(-1)
