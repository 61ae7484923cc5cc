"""The DreamerV2 actor of a bundle (``policy.safetensors``) as the module ``wmsim export-onnx`` turns into
``policy.onnx``: ``(feat (B, F), noise (B, A)) -> (action, mode)`` (see :mod:`wmsim.onnx_format`).

Discrete actions: ``noise`` is uniform and picks the sample by Gumbel-max over the actor's logits;
``action`` and ``mode`` are class indices ``(B,)`` int64. Continuous actions: ``noise`` is a standard
normal ``n``. For DreamerV2's truncated normal the sample is its inverse CDF at the quantile
``Phi(n)`` of the noise (ONNX has ``Erf`` but no inverse, so the graph computes it with Giles'
single-precision approximation); for the tanh-normal of older bundles it is ``tanh(mean + std * n)``.
``mode`` is the distribution's mode. Both are mapped to the env's action range as the agent does
(:meth:`ActorCritic.to_model_action`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wmsim.bundle import Bundle

from .dreamerv2.agent import ActorCritic, agent_from_bundle
from .dreamerv2.networks import OneHotPolicy, TanhNormalPolicy, TruncNormalPolicy


class PolicyGraph(nn.Module):
    """The actor of ``agent`` with its sampling noise as an input (a deterministic graph)."""

    def __init__(self, agent: ActorCritic) -> None:
        super().__init__()
        self.agent = agent

    def forward(self, feat: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        policy = self.agent.actor(feat)
        if isinstance(policy, OneHotPolicy):
            gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1.0 - 1e-7)))
            return (policy.logits + gumbel).argmax(-1), policy.logits.argmax(-1)
        if isinstance(policy, TruncNormalPolicy):
            quantile = 0.5 * (1.0 + torch.erf(noise / math.sqrt(2.0)))
            prob = (policy.cdf_low + quantile * policy.mass).clamp(1e-7, 1.0 - 1e-7)
            sample = policy.mean + policy.std * math.sqrt(2.0) * erfinv(2.0 * prob - 1.0)
            sample = sample.clamp(-1.0 + TruncNormalPolicy.CLIP, 1.0 - TruncNormalPolicy.CLIP)
            return self.agent.to_model_action(sample), self.agent.to_model_action(policy.mode())
        assert isinstance(policy, TanhNormalPolicy)
        sample = torch.tanh(policy.mean + policy.std * noise)
        mode = torch.tanh(policy.mean)
        return self.agent.to_model_action(sample), self.agent.to_model_action(mode)


# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011): single-precision polynomials.
_ERFINV_CENTRAL = (
    2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
    -0.00125372503, -0.00417768164, 0.246640727, 1.50140941,
)  # fmt: skip
_ERFINV_TAIL = (
    -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
    -0.0076224613, 0.00943887047, 1.00167406, 2.83297682,
)  # fmt: skip


def erfinv(x: torch.Tensor) -> torch.Tensor:
    """The inverse error function on ``(-1, 1)`` from elementary operations that export to ONNX
    (relative error about 1e-7 in float32)."""
    w = -torch.log((1.0 - x) * (1.0 + x))
    central, tail = w - 2.5, torch.sqrt(w) - 3.0
    p_central = torch.full_like(x, _ERFINV_CENTRAL[0])
    p_tail = torch.full_like(x, _ERFINV_TAIL[0])
    for a, b in zip(_ERFINV_CENTRAL[1:], _ERFINV_TAIL[1:], strict=True):
        p_central = a + p_central * central
        p_tail = b + p_tail * tail
    return torch.where(w < 5.0, p_central, p_tail) * x


def policy_module(bundle: Bundle) -> nn.Module:
    """The policy graph's module for ``bundle`` (:data:`wmsim.onnx_export.PolicyExporter`)."""
    return PolicyGraph(agent_from_bundle(bundle, "cpu")).eval()
