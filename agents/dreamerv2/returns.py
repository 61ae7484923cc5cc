"""Lambda-returns over imagined trajectories (DreamerV2 equation 4)."""

from __future__ import annotations

import torch


def lambda_returns(
    reward: torch.Tensor, value: torch.Tensor, discount: torch.Tensor, lambda_: float
) -> torch.Tensor:
    """``R_t = r_{t+1} + c_{t+1} * ((1 - lambda) * v_{t+1} + lambda * R_{t+1})``, with ``R_H = v_H``.

    All inputs are ``(H + 1, N)`` along an imagined trajectory ``s_0 .. s_H``: ``reward[t]`` and
    ``discount[t]`` (gamma times the continue probability) are predicted at ``s_t`` (index 0 unused),
    ``value[t]`` is the (target) critic at ``s_t``. Returns ``R_0 .. R_{H-1}``: ``(H, N)``.
    """
    horizon = reward.shape[0] - 1
    last = value[-1]
    returns = []
    for t in reversed(range(horizon)):
        last = reward[t + 1] + discount[t + 1] * ((1.0 - lambda_) * value[t + 1] + lambda_ * last)
        returns.append(last)
    return torch.stack(returns[::-1], 0)
