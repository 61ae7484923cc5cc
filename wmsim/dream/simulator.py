"""The batched dream core: a batch of latent states on a torch device, stepped by the world model's
latent transition (:meth:`wmsim.WorldModel.step`, the same function the agent's imagination uses).

Everything here is tensors on ``device``; there is no host-device synchronisation inside
:meth:`DreamSimulator.step` (no ``.item()``, no data-dependent Python branches), so a step is a fixed
sequence of kernels whatever the batch does. Numpy appears only in the Gymnasium/SB3 layers above.
"""

from __future__ import annotations

import copy
import secrets
from typing import NamedTuple

import torch

from ..bundle import Bundle
from ..rssm import State
from ..world_model import WorldModel
from .actions import check_time_limit

OBS_MODES = ("latent", "pixels", "dict")
TERMINATION_MODES = ("threshold", "sample")
AUTORESET_MODES = ("next_step", "same_step", "disabled")


class StepResult(NamedTuple):
    """One batched step. ``reward (B,)`` float32, ``terminated``/``truncated`` ``(B,)`` bool;
    ``final_feat``/``final_obs`` hold the features/decoded observation of the state each env reached
    *before* a same-step reset (only with ``autoreset="same_step"``; else None)."""

    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_feat: torch.Tensor | None
    final_obs: torch.Tensor | None


class DreamSimulator:
    """``num_envs`` dreamed episodes of one world model, batched on ``device``.

    - ``reset`` draws start states from the bundle's bank (reproducible from ``seed``);
    - ``step(action)`` applies the prior transition, predicts the reward with the reward head and
      termination with the discount head (``termination="threshold"``: continue probability < 0.5;
      ``"sample"``: a Bernoulli draw), and truncates at ``time_limit`` steps;
    - ``autoreset``: ``"next_step"`` (Gymnasium's default: the step after an episode ends resets that
      env, ignoring its action, with reward 0), ``"same_step"`` (reset inside the step that ended the
      episode; the final state is returned in the :class:`StepResult`) or ``"disabled"``.

    The latent state is ``deter (B, D)`` and ``stoch (B, S, K)``; :attr:`feat` is their concatenation
    ``(B, D + S*K)``, the ``latent`` observation.
    """

    def __init__(
        self,
        bundle: Bundle,
        num_envs: int,
        *,
        device: torch.device | str = "cpu",
        time_limit: int | None = None,
        termination: str = "threshold",
        autoreset: str = "next_step",
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be at least 1")
        if termination not in TERMINATION_MODES:
            raise ValueError(f"termination={termination!r}: choose one of {TERMINATION_MODES}")
        if autoreset not in AUTORESET_MODES:
            raise ValueError(f"autoreset={autoreset!r}: choose one of {AUTORESET_MODES}")
        time_limit = check_time_limit(time_limit)
        if len(bundle.start_states) == 0:
            raise ValueError("the bundle holds no start states: it cannot start a dream")
        self.device = torch.device(device)
        # A private copy: the bundle's model may be shared (cached) by envs on other devices or dtypes.
        self.model: WorldModel = copy.deepcopy(bundle.model).to(self.device, dtype).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.bundle = bundle
        self.num_envs = num_envs
        self.termination = termination
        self.autoreset = autoreset
        limit = time_limit if time_limit is not None else bundle.env_spec.time_limit
        self.time_limit = int(limit) if limit is not None else None
        starts = bundle.start_states
        self._bank_deter = starts.deter.to(self.device, dtype)
        self._bank_stoch = torch.nn.functional.one_hot(
            starts.stoch.to(self.device).long(), self.model.config.rssm.classes
        ).to(dtype)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed if seed is not None else secrets.randbits(63))
        rssm = self.model.config.rssm
        self.deter = torch.zeros(num_envs, rssm.deter, device=self.device, dtype=dtype)
        self.stoch = torch.zeros(num_envs, rssm.stoch, rssm.classes, device=self.device, dtype=dtype)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._limit = torch.tensor(self.time_limit or 0, device=self.device)

    # ------------------------------------------------------------------ state
    @property
    def feat(self) -> torch.Tensor:
        """Latent features ``(B, D + S*K)``."""
        return torch.cat([self.deter, self.stoch.flatten(-2)], -1)

    @property
    def state(self) -> State:
        return State(self.deter, self.stoch, self.stoch)

    def decode(self, feat: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded observations in the real env's format: uint8 ``(B, H, W, C)`` or float ``(B, D)``."""
        feat = self.feat if feat is None else feat
        return self.model.obs_from_output(self.model.decode(feat))

    def _draw_starts(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(self._bank_deter), (count,), device=self.device, generator=self.generator)
        return self._bank_deter[index], self._bank_stoch[index]

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def reset(self, seed: int | None = None, mask: torch.Tensor | None = None) -> None:
        """Draw start states for every env (or where ``mask (B,)`` is true)."""
        if seed is not None:
            self.generator.manual_seed(seed)
        deter, stoch = self._draw_starts(self.num_envs)
        if mask is None:
            self.deter, self.stoch = deter, stoch
            self.elapsed.zero_()
            self.needs_reset.zero_()
        else:
            self._reset_where(mask, deter, stoch)

    def _reset_where(self, mask: torch.Tensor, deter: torch.Tensor, stoch: torch.Tensor) -> None:
        self.deter = torch.where(mask[:, None], deter, self.deter)
        self.stoch = torch.where(mask[:, None, None], stoch, self.stoch)
        self.elapsed = torch.where(mask, 0, self.elapsed)
        self.needs_reset = self.needs_reset & ~mask

    @torch.no_grad()
    def reset_from_observation(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Start from real observations ``obs (B, *obs_shape)`` (env format), encoded through the
        posterior from the all-zero state (only where ``mask`` is true, if given)."""
        model = self.model
        n = obs.shape[0]
        prev = model.rssm.initial(n, self.device)
        action = torch.zeros(n, model.io.action_size, device=self.device)
        first = torch.ones(n, dtype=torch.bool, device=self.device)
        prev = prev.map(lambda t: t.to(self.deter.dtype))
        post, _ = model.rssm.obs_step(
            prev, action.to(self.deter.dtype), model.encode(obs.to(self.device)).to(self.deter.dtype), first
        )
        full = mask if mask is not None else torch.ones(n, dtype=torch.bool, device=self.device)
        self._reset_where(full, post.deter.to(self.deter.dtype), post.stoch.detach().to(self.deter.dtype))

    # ------------------------------------------------------------------ step
    def step(self, action: torch.Tensor, *, differentiable: bool = False) -> StepResult:
        """Advance every env by one dreamed step.

        ``action``: ``(B,)`` integer indices for a discrete model, ``(B, A)`` floats for a continuous one
        (validated by the callers at the API edge). With ``differentiable=True`` the step keeps the
        autograd graph, so gradients flow from the returned reward and :attr:`feat` back into
        ``action`` and earlier states (straight-through through the categorical samples).
        """
        with torch.set_grad_enabled(differentiable):
            return self._step(action)

    def _step(self, action: torch.Tensor) -> StepResult:
        model = self.model
        action_vec = (model.one_hot(action) if model.io.discrete else action).to(self.deter.dtype)
        rssm = model.config.rssm
        noise = torch.rand(
            self.num_envs, rssm.stoch, rssm.classes, device=self.device, generator=self.generator
        )
        prev = State(self.deter, self.stoch, self.stoch)
        nxt, reward, cont = model.step(prev, action_vec, noise=noise)
        if self.termination == "sample":
            draw = torch.rand(self.num_envs, device=self.device, generator=self.generator)
            terminated = draw >= cont
        else:
            terminated = cont < 0.5
        elapsed = self.elapsed + 1
        truncated = (
            (elapsed >= self._limit) & ~terminated if self.time_limit else torch.zeros_like(terminated)
        )
        reward = reward.float()
        self.deter, self.stoch, self.elapsed = nxt.deter, nxt.stoch, elapsed

        if self.autoreset == "next_step":
            # Envs that ended on the previous step start afresh now; their action is ignored.
            resetting = self.needs_reset
            deter, stoch = self._draw_starts(self.num_envs)
            self._reset_where(resetting, deter, stoch)
            reward = torch.where(resetting, 0.0, reward)
            terminated = terminated & ~resetting
            truncated = truncated & ~resetting
            self.needs_reset = terminated | truncated
            return StepResult(reward, terminated, truncated, None, None)
        if self.autoreset == "same_step":
            done = terminated | truncated
            final_feat = self.feat
            deter, stoch = self._draw_starts(self.num_envs)
            self._reset_where(done, deter, stoch)
            return StepResult(reward, terminated, truncated, final_feat, None)
        self.needs_reset = terminated | truncated
        return StepResult(reward, terminated, truncated, None, None)
