"""The dream's torch API: tensors in, tensors out, and gradients through dreamed steps.

    python examples/dream_torch_api.py runs/example-pendulum/bundle

For a continuous-action model, `step_tensor(..., differentiable=True)` keeps the autograd graph, so
the summed predicted reward of a 15-step dream can be differentiated with respect to the actions, as
in Dreamer's dynamics backpropagation and PWM's first-order policy gradients.
"""

from __future__ import annotations

import sys

import torch

from wmsim.dream import DreamVectorEnv


def main(bundle: str) -> None:
    env = DreamVectorEnv(bundle, num_envs=1024, device="auto", seed=0)
    env.reset_tensor(seed=0)
    actions = torch.zeros(15, 1024, *env.single_action_space.shape, device=env.device, requires_grad=True)
    total = torch.zeros((), device=env.device)
    for t in range(15):
        _, reward, _, _ = env.step_tensor(actions[t].tanh() * 2.0, differentiable=True)
        total = total + reward.mean()
    total.backward()
    print(f"dreamed return {total.item():.3f}; |d return / d actions| = {actions.grad.norm().item():.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/example-pendulum/bundle")
