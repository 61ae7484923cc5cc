"""Acting in a real env: the posterior filter of the world model turns observations into model states,
and the actor picks actions from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from wmsim.data import play_episodes as run_episodes
from wmsim.rssm import State
from wmsim.world_model import WorldModel

from .networks import Actor


class RealEnvPolicy:
    """A DreamerV2 policy for one real env: call :meth:`reset` at every episode start, then
    :meth:`act` with each observation. ``mode=True`` takes the actor's most likely action.

    Its randomness (the posterior samples of the filter and, without ``mode``, the sampled actions)
    comes from its own generator, seeded by ``seed`` and reseeded by ``reset(seed=...)``, so seeded
    episodes give the same returns every time. ``seed=None`` draws from torch's global generator
    instead (the training loop's, which its checkpoints store).
    """

    def __init__(
        self,
        world_model: WorldModel,
        actor: Actor | Callable[[torch.Tensor], Any],
        action_space: gym.Space,
        to_model_action: Any,
        mode: bool = False,
        seed: int | None = 0,
    ) -> None:
        self.world_model = world_model
        self.actor = actor
        self.action_space = action_space
        self.to_model_action = to_model_action
        self.mode = mode
        self.device = next(world_model.parameters()).device
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator(self.device)
            self.generator.manual_seed(seed)
        self.state: State | None = None
        self.prev_action = torch.zeros(1, world_model.io.action_size, device=self.device)

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode (and reseed the policy's generator when ``seed`` is given)."""
        if seed is not None and self.generator is not None:
            self.generator.manual_seed(seed)
        self.state = None
        self.prev_action = torch.zeros_like(self.prev_action)

    def _noise(self) -> torch.Tensor:
        c = self.world_model.config.rssm
        return torch.rand(1, c.stoch, c.classes, device=self.device, generator=self.generator)

    def took(self, action: Any) -> None:
        """Tell the policy that the env was given ``action`` instead of the one :meth:`act` returned
        (exploration), so the next posterior state follows the action really taken."""
        io = self.world_model.io
        if io.discrete:
            taken = torch.zeros_like(self.prev_action)
            taken[0, int(action)] = 1.0
        else:
            taken = torch.as_tensor(np.asarray(action, np.float32), device=self.device).reshape(1, -1)
        self.prev_action = taken

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> Any:
        """The env action for observation ``obs`` (an int or a float32 array)."""
        wm = self.world_model
        first = self.state is None
        prev = self.state if self.state is not None else wm.rssm.initial(1, self.device)
        self.state, _ = wm.obs_step(
            prev,
            self.prev_action,
            torch.as_tensor(np.asarray(obs)[None], device=self.device),
            torch.tensor([first], device=self.device),
            noise=(self._noise(), self._noise()),
        )
        policy = self.actor(self.state.feat)
        action = policy.mode() if self.mode else policy.sample(self.generator)
        model_action = self.to_model_action(action)
        self.prev_action = model_action
        if wm.io.discrete:
            return int(model_action[0].argmax())
        assert isinstance(self.action_space, gym.spaces.Box)
        return np.clip(model_action[0].cpu().numpy(), self.action_space.low, self.action_space.high).astype(
            np.float32
        )


def play_episodes(env: gym.Env, policy: RealEnvPolicy, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes with seeds ``seed, seed + 1, ...`` (the policy reseeded with
    each episode's seed)."""
    return run_episodes(env, policy.act, episodes, seed, on_reset=policy.reset)
