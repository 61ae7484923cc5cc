"""DreamerV2's world model: encoder + RSSM + decoder, reward and discount heads, and its loss.

Batches are dicts of tensors with a batch and a time axis ``(B, T, ...)`` in the replay's layout:

- ``obs``: uint8 images ``(B, T, H, W, C)`` or float vectors ``(B, T, D)``
- ``action``: ``(B, T, A)`` float, the action that led to each step (one-hot for discrete actions)
- ``reward``: ``(B, T)``; ``is_first``, ``is_terminal``: ``(B, T)`` bool

The latent transition with its heads (:meth:`WorldModel.step`) is the one function the dream
environments and the actor-critic's imagination both call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import WorldModelConfig
from .nn import MLP, ConvDecoder, ConvEncoder, dreamer_adam, init_glorot_
from .rssm import RSSM, State, kl_balance_loss

#: How far (on [0, 1]) a pixel must lie from the median frame to count as part of an object.
OBJECT_THRESHOLD = 0.08

IMAGE_SIZE = 64


@dataclass(frozen=True)
class IOSpec:
    """What the world model consumes and acts with, derived from the real env's spaces.

    ``obs_shape`` is the env's observation shape: ``(H, W, C)`` for images (uint8), ``(D,)`` for vectors.
    ``action_size`` is the one-hot size (discrete) or the action dimension (continuous).
    """

    obs_shape: tuple[int, ...]
    image: bool
    action_size: int
    discrete: bool

    @classmethod
    def from_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> IOSpec:
        """Build from Gymnasium spaces; raises ValueError for spaces a world model cannot take."""
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError(
                f"observation space {observation_space} is not supported: use a 1-D Box (state vector)"
                " or an HxWxC uint8 Box (image)"
            )
        shape = tuple(int(s) for s in observation_space.shape)
        image = len(shape) == 3
        if image and (observation_space.dtype != np.uint8 or shape[:2] != (IMAGE_SIZE, IMAGE_SIZE)):
            raise ValueError(
                f"image observations must be uint8 of shape ({IMAGE_SIZE}, {IMAGE_SIZE}, C), got"
                f" {observation_space.dtype} {shape}: make the env with size=(64, 64)"
            )
        if len(shape) not in (1, 3):
            raise ValueError(f"observation shape {shape} is not supported: use (D,) or (64, 64, C)")
        if isinstance(action_space, gym.spaces.Discrete):
            return cls(shape, image, int(action_space.n), True)
        if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            return cls(shape, image, int(action_space.shape[0]), False)
        raise ValueError(f"action space {action_space} is not supported: use Discrete or a 1-D Box")

    def to_dict(self) -> dict[str, Any]:
        return {
            "obs_shape": list(self.obs_shape),
            "image": self.image,
            "action_size": self.action_size,
            "discrete": self.discrete,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IOSpec:
        expected = {"obs_shape", "image", "action_size", "discrete"}
        if set(data) != expected:
            raise ValueError(f"io spec keys {sorted(data)} differ from the expected {sorted(expected)}")
        return cls(
            tuple(int(s) for s in data["obs_shape"]),
            bool(data["image"]),
            int(data["action_size"]),
            bool(data["discrete"]),
        )


class WorldModel(nn.Module):
    """DreamerV2's world model for one observation/action spec (see module docstring for shapes)."""

    def __init__(self, config: WorldModelConfig, io: IOSpec) -> None:
        super().__init__()
        self.config = config
        self.io = io
        feat, segments = config.rssm.feat_size, config.rssm.feat_segments
        if io.image:
            channels = io.obs_shape[-1]
            self.encoder: nn.Module = ConvEncoder(
                channels, config.encoder.cnn_depth, config.encoder.cnn_kernels, IMAGE_SIZE
            )
            embed_size = self.encoder.out_size  # type: ignore[assignment]
            self.decoder: nn.Module = ConvDecoder(
                feat, channels, config.decoder.cnn_depth, config.decoder.cnn_kernels, segments
            )
        else:
            obs_size = io.obs_shape[0]
            e, d = config.encoder, config.decoder
            self.encoder = nn.Sequential(MLP(obs_size, e.mlp_units, e.mlp_layers - 1, e.mlp_units), nn.ELU())
            embed_size = e.mlp_units
            self.decoder = MLP(feat, obs_size, d.mlp_layers, d.mlp_units, segments)
        self.rssm = RSSM(config.rssm, io.action_size, int(embed_size))
        self.reward_head = MLP(feat, 1, config.reward_head.layers, config.reward_head.units, segments)
        self.discount_head: nn.Module | None = (
            MLP(feat, 1, config.discount_head.layers, config.discount_head.units, segments)
            if config.pred_discount
            else None
        )
        init_glorot_(self)

    # ------------------------------------------------------------------ data preparation
    def prepare_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Env observations to network inputs: images ``(..., H, W, C) uint8 -> (..., C, H, W)`` floats
        in [-0.5, 0.5]; vectors pass through as float32."""
        if self.io.image:
            return obs.movedim(-1, -3).float() / 255.0 - 0.5
        return obs.float()

    def obs_from_output(self, output: torch.Tensor) -> torch.Tensor:
        """Decoder output back to the env's observation format (uint8 HWC images, float vectors)."""
        if self.io.image:
            return ((output.movedim(-3, -1) + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8)
        return output

    def transform_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """The configured reward transform (``tanh`` for Atari, as in DreamerV2)."""
        return torch.tanh(reward) if self.config.reward_transform == "tanh" else reward

    def one_hot(self, action: torch.Tensor) -> torch.Tensor:
        """Discrete action indices ``(...)`` -> one-hot ``(..., A)``; continuous actions pass through."""
        if self.io.discrete:
            return F.one_hot(action.long(), self.io.action_size).float()
        return action.float()

    # ------------------------------------------------------------------ the model
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs`` in env format ``(..., *obs_shape)`` -> embedding ``(..., E)``."""
        return self.encoder(self.prepare_obs(obs))

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        """Features ``(..., F)`` -> decoder mean in network format (see :meth:`obs_from_output`)."""
        return self.decoder(feat)

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted (transformed) reward ``(...)``."""
        return self.reward_head(feat).squeeze(-1)

    def discount_logits(self, feat: torch.Tensor) -> torch.Tensor | None:
        """Logits of the Bernoulli discount ``(...)``, or None when the config predicts no discount."""
        return None if self.discount_head is None else self.discount_head(feat).squeeze(-1)

    def discount(self, feat: torch.Tensor) -> torch.Tensor:
        """Expected discount ``gamma * P(continue)`` ``(...)``; constant ``gamma`` without a head."""
        logits = self.discount_logits(feat)
        if logits is None:
            return torch.full(feat.shape[:-1], self.config.discount, device=feat.device, dtype=feat.dtype)
        return torch.sigmoid(logits)

    def continue_prob(self, feat: torch.Tensor) -> torch.Tensor:
        """Probability that the episode goes on after this state ``(...)`` (1 - termination)."""
        return (self.discount(feat) / self.config.discount).clamp(0.0, 1.0)

    def step(
        self, state: State, action: torch.Tensor, noise: torch.Tensor | None = None, sample: bool = True
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        """The latent transition with its heads, for any batch size.

        ``state: State (B, ...)``, ``action: (B, A)`` (one-hot or continuous), ``noise``: optional
        uniform ``(B, S, K)``. Returns ``(next_state, reward (B,), continue_prob (B,))``. Differentiable
        with respect to state and action (straight-through through the sample).
        """
        next_state = self.rssm.img_step(state, action, noise=noise, sample=sample)
        feat = next_state.feat
        return next_state, self.reward(feat), self.continue_prob(feat)

    def observe(self, batch: dict[str, torch.Tensor], state: State | None = None) -> tuple[State, State]:
        """Posterior and prior states of a batch of real sequences ``(B, T, ...)``."""
        embed = self.encode(batch["obs"])
        return self.rssm.observe(embed, batch["action"], batch["is_first"], state)

    # ------------------------------------------------------------------ the loss
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """DreamerV2's world-model loss on a batch of sequences.

        ``loss = kl_scale * KL_balanced + image_scale * NLL(obs) + reward_scale * NLL(reward)
                 + discount_scale * NLL(discount)``, each NLL averaged over batch and time.
        Returns ``(loss, posterior states (B, T, ...), metrics)``; the metrics are detached tensors
        gathered lazily by the caller to avoid a host sync per term.
        """
        c = self.config
        posts, priors = self.observe(batch)
        feat = posts.feat
        kl_loss, kl = kl_balance_loss(posts.logits, priors.logits, c.loss.kl_balance, c.loss.kl_free)
        target_obs = self.prepare_obs(batch["obs"])
        pred_obs = self.decode(feat).float()
        obs_dims = tuple(range(2, target_obs.dim()))
        squared_error = (pred_obs - target_obs).pow(2)
        obs_nll = 0.5 * squared_error.sum(obs_dims).mean()
        fitted_obs_nll = obs_nll
        if self.io.image and c.loss.object_scale != 1.0:
            weight = object_weight(target_obs, pred_obs.detach(), c.loss.object_scale)
            fitted_obs_nll = 0.5 * (weight * squared_error).sum(obs_dims).mean()
        reward_target = self.transform_reward(batch["reward"].float())
        reward_nll = 0.5 * (self.reward(feat).float() - reward_target).pow(2).mean()
        loss = (
            c.loss.kl_scale * kl_loss + c.loss.image_scale * fitted_obs_nll + c.loss.reward_scale * reward_nll
        )
        metrics: dict[str, torch.Tensor] = {
            "kl": kl.mean().detach(),
            "kl_loss": kl_loss.detach(),
            "obs_loss": obs_nll.detach(),
            "reward_loss": reward_nll.detach(),
            "prior_entropy": _entropy(priors.logits).detach(),
            "post_entropy": _entropy(posts.logits).detach(),
        }
        logits = self.discount_logits(feat)
        if logits is not None:
            discount_target = c.discount * (1.0 - batch["is_terminal"].float())
            discount_nll = F.binary_cross_entropy_with_logits(logits.float(), discount_target)
            loss = loss + c.loss.discount_scale * discount_nll
            metrics["discount_loss"] = discount_nll.detach()
        metrics["model_loss"] = loss.detach()
        return loss, posts, metrics


def object_weight(target: torch.Tensor, pred: torch.Tensor, scale: float) -> torch.Tensor:
    """Per-pixel weights ``(B, T, C, H, W)`` of the image loss: ``scale`` on object pixels, 1 elsewhere.

    Images are network inputs in [-0.5, 0.5]. The background is the batch's median frame (over all
    ``B * T`` frames), which for a fixed camera is the static scene. A pixel is an object pixel when
    the target *or* the prediction lies at least ``OBJECT_THRESHOLD`` from it, so a missing object
    and an object drawn where there is none cost the same.
    """
    background = target.flatten(0, 1).median(dim=0).values
    is_object = ((target - background).abs() >= OBJECT_THRESHOLD) | (
        (pred - background).abs() >= OBJECT_THRESHOLD
    )
    return 1.0 + (scale - 1.0) * is_object.to(target.dtype)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(logits.float(), -1)
    return -(log_probs.exp() * log_probs).sum((-2, -1)).mean()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast on GPUs and fp32 elsewhere; ``bf16`` and ``fp32`` are kept."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision={precision!r}: choose 'auto', 'bf16' or 'fp32'")
    return precision


class WorldModelTrainer:
    """Adam + gradient clipping + optional bf16 autocast around :meth:`WorldModel.loss`."""

    def __init__(self, model: WorldModel, *, precision: str = "auto") -> None:
        self.model = model
        o = model.config.optim
        self.optimizer = dreamer_adam(model.parameters(), o.lr, o.eps, o.weight_decay)
        device = next(model.parameters()).device
        self.precision = resolve_precision(precision, device)
        self.device = device

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[State, dict[str, torch.Tensor]]:
        """One gradient step on a batch; returns the (detached) posterior states and metrics."""
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss, posts, metrics = self.model.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.model.config.optim.clip)
        self.optimizer.step()
        metrics["model_grad_norm"] = grad_norm.detach()
        return posts.map(lambda t: t.detach()), metrics


def batch_to_torch(batch: dict[str, np.ndarray], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Replay arrays ``(B, T, ...)`` to tensors on ``device`` (images stay uint8 until the model)."""
    return {key: torch.as_tensor(value, device=device) for key, value in batch.items()}
