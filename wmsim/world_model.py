"""DreamerV2's world model: encoder + RSSM + decoder, reward and discount heads, and its loss.

Batches are dicts of tensors with a batch and a time axis ``(B, T, ...)`` in the replay's layout:

- ``obs``: uint8 images ``(B, T, H, W, C)`` or float vectors ``(B, T, D)``
- ``action``: ``(B, T, A)`` float, the action that led to each step (one-hot for discrete actions)
- ``reward``: ``(B, T)``; ``is_first``, ``is_terminal``: ``(B, T)`` bool

The latent transition with its heads (:meth:`WorldModel.step`) is the one function the dream
environments and the actor-critic's imagination both call.

**Multi-task models** (PWM, TD-MPC2): an :class:`IOSpec` with a :class:`TaskSet` describes one model
over several tasks of vector observations and continuous actions of different sizes. Observations and
actions are zero-padded to the largest, and a learned task embedding ``e = E[task] / max(1, |E[task]|)``
``(..., task_embed)`` is concatenated to the encoder's input, to the transition's input (next to the
action, so ``img_in`` sees it) and to the features every head reads (decoder, reward, discount).
Batches then carry ``task``: ``(B, T)`` int64 task indices. :meth:`WorldModel.for_task` binds one task:
the returned model shares the weights, speaks that task's real (unpadded) sizes and pads inside.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import WorldModelConfig
from .nn import MLP, ConvDecoder, ConvEncoder, dreamer_adam, init_glorot_
from .rssm import RSSM, State, kl_balance_loss

log = logging.getLogger(__name__)

#: How far (on [0, 1]) a pixel must lie from the median frame to count as part of an object.
OBJECT_THRESHOLD = 0.08

IMAGE_SIZE = 64


@dataclass(frozen=True)
class TaskIO:
    """One task of a multi-task model: its name and its real observation and action sizes."""

    name: str
    obs_size: int
    action_size: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"task name {self.name!r} must be a non-empty string")
        for what in ("obs_size", "action_size"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"task {self.name!r}: {what}={value!r} must be an integer >= 1")


@dataclass(frozen=True)
class TaskSet:
    """The tasks of a multi-task model, in the order of their indices, and the task embedding's size."""

    tasks: tuple[TaskIO, ...]
    embed: int = 32

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a multi-task model needs at least one task")
        names = [t.name for t in self.tasks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"task names must be unique; {twice} appear more than once")
        if isinstance(self.embed, bool) or not isinstance(self.embed, int) or self.embed < 1:
            raise ValueError(f"task_embed={self.embed!r} must be an integer >= 1")

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def index(self, task: str | int) -> int:
        """The index of a task name (or a valid index); an unknown one raises a ValueError listing
        the tasks."""
        if isinstance(task, int) and not isinstance(task, bool) and 0 <= task < len(self.tasks):
            return task
        if isinstance(task, str) and task in self.names:
            return self.names.index(task)
        raise ValueError(f"unknown task {task!r}: this model's tasks are {', '.join(self.names)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "embed": self.embed,
            "tasks": [
                {"name": t.name, "obs_size": t.obs_size, "action_size": t.action_size} for t in self.tasks
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> TaskSet:
        if (
            not isinstance(data, dict)
            or set(data) != {"embed", "tasks"}
            or not isinstance(data["tasks"], list)
        ):
            raise ValueError(f"io tasks {data!r}: expected an object with 'embed' and a list 'tasks'")
        tasks = []
        for item in data["tasks"]:
            if not isinstance(item, dict) or set(item) != {"name", "obs_size", "action_size"}:
                raise ValueError(f"io task {item!r}: expected the keys name, obs_size and action_size")
            tasks.append(TaskIO(item["name"], item["obs_size"], item["action_size"]))
        return cls(tuple(tasks), data["embed"])


@dataclass(frozen=True)
class IOSpec:
    """What the world model consumes and acts with, derived from the real env's spaces.

    ``obs_shape`` is the env's observation shape: ``(H, W, C)`` for images (uint8), ``(D,)`` for vectors.
    ``action_size`` is the one-hot size (discrete) or the action dimension (continuous).
    ``tasks``: the tasks of a multi-task model (None for one env); ``obs_shape`` and ``action_size``
    are then the largest task's (the padded sizes).
    """

    obs_shape: tuple[int, ...]
    image: bool
    action_size: int
    discrete: bool
    tasks: TaskSet | None = field(default=None)

    @classmethod
    def multi_task(cls, tasks: list[TaskIO] | tuple[TaskIO, ...], embed: int = 32) -> IOSpec:
        """The padded spec of a multi-task model of vector observations and continuous actions."""
        task_set = TaskSet(tuple(tasks), embed)
        obs = max(t.obs_size for t in task_set.tasks)
        action = max(t.action_size for t in task_set.tasks)
        return cls((obs,), False, action, False, task_set)

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
        out: dict[str, Any] = {
            "obs_shape": list(self.obs_shape),
            "image": self.image,
            "action_size": self.action_size,
            "discrete": self.discrete,
        }
        if self.tasks is not None:
            out["tasks"] = self.tasks.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IOSpec:
        expected = {"obs_shape", "image", "action_size", "discrete"}
        if set(data) - {"tasks"} != expected:
            raise ValueError(f"io spec keys {sorted(data)} differ from the expected {sorted(expected)}")
        io = cls(
            tuple(int(s) for s in data["obs_shape"]),
            bool(data["image"]),
            int(data["action_size"]),
            bool(data["discrete"]),
        )
        if "tasks" not in data:
            return io
        padded = cls.multi_task(TaskSet.from_dict(data["tasks"]).tasks, data["tasks"]["embed"])
        if padded != dataclasses.replace(io, tasks=padded.tasks):
            raise ValueError(
                f"io spec {io.obs_shape}, {io.action_size} actions, image={io.image}, discrete={io.discrete}"
                f" does not fit its tasks (padded sizes {padded.obs_shape}, {padded.action_size} continuous"
                " actions, vector observations)"
            )
        return padded


class WorldModel(nn.Module):
    """DreamerV2's world model for one observation/action spec (see module docstring for shapes).

    A multi-task model (``io.tasks`` set) takes task indices (``task=`` ``(...)`` int64, or a batch's
    ``"task"``) wherever its inputs come from one task; a model bound to one task by :meth:`for_task`
    needs none and takes that task's unpadded observations and actions.
    """

    def __init__(self, config: WorldModelConfig, io: IOSpec) -> None:
        super().__init__()
        self.config = config
        #: The spec the weights were built for (padded sizes and the tasks, for a multi-task model).
        self.full_io = io
        #: The spec this model speaks: ``full_io``, or the bound task's real sizes (:meth:`for_task`).
        self.io = io
        #: The task this model is bound to (:meth:`for_task`), or None.
        self.task: int | None = None
        if io.tasks is not None and (io.image or io.discrete):
            raise ValueError("multi-task models take vector observations and continuous actions only")
        embed = io.tasks.embed if io.tasks is not None else 0
        self.task_embed: nn.Embedding | None = (
            nn.Embedding(len(io.tasks.tasks), embed) if io.tasks is not None else None
        )
        feat = config.rssm.feat_size + embed
        segments = config.rssm.feat_segments + (((embed, 0),) if embed else ())
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
            self.encoder = nn.Sequential(
                MLP(obs_size + embed, e.mlp_units, e.mlp_layers - 1, e.mlp_units), nn.ELU()
            )
            embed_size = e.mlp_units
            self.decoder = MLP(feat, obs_size, d.mlp_layers, d.mlp_units, segments)
        self.rssm = RSSM(config.rssm, io.action_size + embed, int(embed_size))
        self.reward_head = MLP(feat, 1, config.reward_head.layers, config.reward_head.units, segments)
        self.discount_head: nn.Module | None = (
            MLP(feat, 1, config.discount_head.layers, config.discount_head.units, segments)
            if config.pred_discount
            else None
        )
        init_glorot_(self)
        if self.task_embed is not None:
            nn.init.uniform_(self.task_embed.weight, -1.0, 1.0)

    # ------------------------------------------------------------------ tasks
    @property
    def tasks(self) -> list[str]:
        """The task names of a multi-task model (empty for a single-task one)."""
        return self.full_io.tasks.names if self.full_io.tasks is not None else []

    def task_index(self, task: str | int) -> int:
        """The index of ``task``; a ValueError names the tasks (or says the model has none)."""
        if self.full_io.tasks is None:
            raise ValueError(f"task {task!r}: this world model is single-task (it has no tasks)")
        return self.full_io.tasks.index(task)

    def for_task(self, task: str | int) -> WorldModel:
        """This model bound to one task: the same modules and weights (not copied), with ``io`` the task's
        real sizes; inputs are zero-padded and outputs cut to them inside."""
        index = self.task_index(task)
        spec = self.full_io.tasks.tasks[index]  # type: ignore[union-attr]
        view = copy.copy(self)  # shares the module and parameter dicts
        view.task = index
        view.io = IOSpec((spec.obs_size,), False, spec.action_size, False)
        return view

    def _task_code(self, like: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor | None:
        """The normalised task embedding ``(..., E)`` for inputs ``like (..., X)``, or None for a
        single-task model. ``task``: indices ``like.shape[:-1]``; default the bound task."""
        if self.task_embed is None:
            return None
        if task is None:
            if self.task is None:
                raise ValueError(
                    f"this world model is multi-task ({', '.join(self.tasks)}): pass task indices, or use"
                    " model.for_task(name)"
                )
            task = torch.full(like.shape[:-1], self.task, dtype=torch.long, device=like.device)
        code = self.task_embed(task.long())
        code = code / code.norm(dim=-1, keepdim=True).clamp_min(1.0)
        return code.to(like.dtype)

    def _with_task(
        self, inputs: torch.Tensor, task: torch.Tensor | None, size: int | None = None
    ) -> torch.Tensor:
        """``inputs (..., X)`` zero-padded to ``size`` and followed by the task embedding (multi-task
        models; single-task ones return ``inputs``)."""
        code = self._task_code(inputs, task)
        if code is None:
            return inputs
        if size is not None and inputs.shape[-1] < size:
            inputs = F.pad(inputs, (0, size - inputs.shape[-1]))
        return torch.cat([inputs, code], -1)

    def transition_input(self, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """An action ``(..., A)`` as the RSSM takes it: padded and followed by the task embedding."""
        return self._with_task(action, task, self.full_io.action_size)

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
    def encode(self, obs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """``obs`` in env format ``(..., *obs_shape)`` -> embedding ``(..., E)``."""
        weight = next(self.encoder.parameters())
        inputs = self.prepare_obs(obs).to(weight.dtype)  # the compute dtype of a half-precision copy
        if self.task_embed is not None:
            inputs = self._with_task(inputs, task, self.full_io.obs_shape[0])
        return self.encoder(inputs)

    def decode(self, feat: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``(..., F)`` -> decoder mean in network format (see :meth:`obs_from_output`); a
        model bound to a task cuts the padding off."""
        out = self.decoder(self._with_task(feat, task))
        if self.task is not None:
            out = out[..., : self.io.obs_shape[0]]
        return out

    def reward(self, feat: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted (transformed) reward ``(...)``."""
        return self.reward_head(self._with_task(feat, task)).squeeze(-1)

    def discount_logits(self, feat: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor | None:
        """Logits of the Bernoulli discount ``(...)``, or None when the config predicts no discount."""
        if self.discount_head is None:
            return None
        return self.discount_head(self._with_task(feat, task)).squeeze(-1)

    def discount(self, feat: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Expected discount ``gamma * P(continue)`` ``(...)``; constant ``gamma`` without a head."""
        logits = self.discount_logits(feat, task)
        if logits is None:
            return torch.full(feat.shape[:-1], self.config.discount, device=feat.device, dtype=feat.dtype)
        return torch.sigmoid(logits)

    def continue_prob(self, feat: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Probability that the episode goes on after this state ``(...)`` (1 - termination)."""
        return (self.discount(feat, task) / self.config.discount).clamp(0.0, 1.0)

    def step(
        self,
        state: State,
        action: torch.Tensor,
        noise: torch.Tensor | None = None,
        sample: bool = True,
        task: torch.Tensor | None = None,
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        """The latent transition with its heads, for any batch size.

        ``state: State (B, ...)``, ``action: (B, A)`` (one-hot or continuous), ``noise``: optional
        uniform ``(B, S, K)``; ``task``: ``(B,)`` indices for an unbound multi-task model. Returns
        ``(next_state, reward (B,), continue_prob (B,))``. Differentiable with respect to state and
        action (straight-through through the sample).
        """
        next_state = self.transition(state, action, noise=noise, sample=sample, task=task)
        reward, cont = self.heads(next_state.feat, task)
        return next_state, reward, cont

    def transition(
        self,
        state: State,
        action: torch.Tensor,
        noise: torch.Tensor | None = None,
        sample: bool = True,
        task: torch.Tensor | None = None,
    ) -> State:
        """The latent part of :meth:`step` (the prior), without the heads: for rollouts that read the
        heads once on all the states of a trajectory (:meth:`heads` on ``(H, B, F)``), which runs
        fewer, larger matrix products than a head call per step."""
        return self.rssm.img_step(state, self.transition_input(action, task), noise=noise, sample=sample)

    def heads(
        self, feat: torch.Tensor, task: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads :meth:`step` reads on a state's features ``(..., F)``: ``(reward (...),
        continue_prob (...))``."""
        return self.reward(feat, task), self.continue_prob(feat, task)

    def obs_step(
        self,
        prev: State,
        prev_action: torch.Tensor,
        obs: torch.Tensor,
        is_first: torch.Tensor,
        sample: bool = True,
        noise: tuple[torch.Tensor, torch.Tensor] | None = None,
        task: torch.Tensor | None = None,
    ) -> tuple[State, State]:
        """One filtering step on real observations ``obs (B, *obs_shape)`` (env format) after
        ``prev_action (B, A)``: :meth:`RSSM.obs_step` with the encoder (and the task) applied.
        Returns ``(post, prior)``."""
        embed = self.encode(obs, task)
        return self.rssm.obs_step(
            prev, self.transition_input(prev_action, task), embed, is_first, sample=sample, noise=noise
        )

    def observe(self, batch: dict[str, torch.Tensor], state: State | None = None) -> tuple[State, State]:
        """Posterior and prior states of a batch of real sequences ``(B, T, ...)`` (with ``"task"``
        ``(B, T)`` for an unbound multi-task model)."""
        task = batch.get("task")
        embed = self.encode(batch["obs"], task)
        return self.rssm.observe(
            embed, self.transition_input(batch["action"], task), batch["is_first"], state
        )

    # ------------------------------------------------------------------ the loss
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """DreamerV2's world-model loss on a batch of sequences.

        ``loss = kl_scale * KL_balanced + image_scale * NLL(obs) + reward_scale * NLL(reward)
                 + discount_scale * NLL(discount)``, each NLL averaged over batch and time; the image
        and reward NLLs the optimiser sees carry ``LossConfig``'s object and reward-event weights
        when those are set (the metrics report the unweighted NLLs).
        For a multi-task batch the observation error counts each task's real dimensions only.
        Returns ``(loss, posterior states (B, T, ...), metrics)``; the metrics are detached tensors
        gathered lazily by the caller to avoid a host sync per term.
        """
        c = self.config
        task = batch.get("task")
        posts, priors = self.observe(batch)
        feat = posts.feat
        kl_loss, kl = kl_balance_loss(posts.logits, priors.logits, c.loss.kl_balance, c.loss.kl_free)
        target_obs = self.prepare_obs(batch["obs"])
        pred_obs = self.decode(feat, task).float()
        obs_dims = tuple(range(2, target_obs.dim()))
        squared_error = (pred_obs - target_obs).pow(2)
        if self.task_embed is not None and self.task is None and task is not None:
            sizes = torch.as_tensor(
                [t.obs_size for t in self.full_io.tasks.tasks],  # type: ignore[union-attr]
                device=task.device,
            )
            inside = torch.arange(squared_error.shape[-1], device=task.device) < sizes[task.long()][..., None]
            squared_error = squared_error * inside.to(squared_error.dtype)
        obs_nll = 0.5 * squared_error.sum(obs_dims).mean()
        fitted_obs_nll = obs_nll
        if self.io.image and c.loss.object_scale != 1.0:
            weight = object_weight(target_obs, pred_obs.detach(), c.loss.object_scale)
            fitted_obs_nll = 0.5 * (weight * squared_error).sum(obs_dims).mean()
        reward_target = self.transform_reward(batch["reward"].float())
        reward_error = (self.reward(feat, task).float() - reward_target).pow(2)
        reward_nll = 0.5 * reward_error.mean()
        fitted_reward_nll = reward_nll
        if c.loss.reward_event_scale != 1.0:
            event = (batch["reward"] != 0).to(reward_error.dtype)
            fitted_reward_nll = (
                0.5 * ((1.0 + (c.loss.reward_event_scale - 1.0) * event) * reward_error).mean()
            )
        loss = (
            c.loss.kl_scale * kl_loss
            + c.loss.image_scale * fitted_obs_nll
            + c.loss.reward_scale * fitted_reward_nll
        )
        metrics: dict[str, torch.Tensor] = {
            "kl": kl.mean().detach(),
            "kl_loss": kl_loss.detach(),
            "obs_loss": obs_nll.detach(),
            "reward_loss": reward_nll.detach(),
            "prior_entropy": _entropy(priors.logits).detach(),
            "post_entropy": _entropy(posts.logits).detach(),
        }
        logits = self.discount_logits(feat, task)
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


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), as oneDNN uses it."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device, image: bool = False) -> str:
    """``auto`` is bf16 autocast on GPUs, and on CPUs for image models where the CPU multiplies
    bfloat16 natively (the convolutions then run about 1.5 times faster); fp32 elsewhere (on CPUs
    without native bf16, with one log line). ``bf16`` and ``fp32`` are kept as asked."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16"
        if device.type == "cpu" and image:
            if native_bf16_cpu():
                return "bf16"
            log.info("this CPU has no native bfloat16 (AVX512-BF16 or AMX): training in fp32")
        return "fp32"
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
        self.precision = resolve_precision(precision, device, image=model.io.image)
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
