"""The DreamerV2 actor of a bundle (``policy.safetensors``) as the module ``wmsim export-onnx`` turns into
``policy.onnx``: ``(feat (B, F), noise (B, A)) -> (action, mode)`` (see :mod:`wmsim.onnx_format`).

Discrete actions: ``noise`` is uniform and picks the sample by Gumbel-max over the actor's logits;
``action`` and ``mode`` are class indices ``(B,)`` int64. Continuous actions: ``noise`` is a standard
normal; ``action = tanh(mean + std * noise)`` and ``mode = tanh(mean)``, both mapped to the env's
action range as the agent does (:meth:`ActorCritic.to_model_action`).
"""

from __future__ import annotations

import torch
from torch import nn

from wmsim.bundle import Bundle

from .dreamerv2.agent import ActorCritic, agent_from_bundle
from .dreamerv2.networks import OneHotPolicy, TanhNormalPolicy


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
        assert isinstance(policy, TanhNormalPolicy)
        sample = torch.tanh(policy.mean + policy.std * noise)
        mode = torch.tanh(policy.mean)
        return self.agent.to_model_action(sample), self.agent.to_model_action(mode)


def policy_module(bundle: Bundle) -> nn.Module:
    """The policy graph's module for ``bundle`` (:data:`wmsim.onnx_export.PolicyExporter`)."""
    return PolicyGraph(agent_from_bundle(bundle, "cpu")).eval()
