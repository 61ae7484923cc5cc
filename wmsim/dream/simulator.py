"""The torch backend of the dreams: a batch of latent states on a torch device, stepped by the world
model's latent transition (:meth:`wmsim.WorldModel.step`, the same function the agent's imagination
uses).

Everything here is tensors on ``device``; there is no host-device synchronisation inside
:meth:`DreamSimulator.step` (no ``.item()``, no data-dependent Python branches), so a step is a fixed
sequence of kernels whatever the batch does. The episode logic (termination, time limit, autoreset)
is :class:`~wmsim.dream.backend.DreamBackend`'s, shared with the onnxruntime backend.
"""

from __future__ import annotations

import copy
import os
import secrets
from typing import Any

import numpy as np
import torch

from ..bundle import Bundle
from ..bundle_format import task_index
from ..devices import resolve_device
from ..envs import space_from_dict
from ..onnx_format import ModelDims
from ..registry import resolve_model
from ..rssm import State
from ..world_model import WorldModel
from .actions import check_time_limit
from .backend import DreamBackend, StepResult, check_num_envs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def bundle_for_task(bundle: Bundle, task: str | None) -> Bundle:
    """The bundle a dream of ``task`` runs: the task's bundle of a multi-task bundle, or ``bundle``
    itself; a ValueError lists the tasks when ``task`` is missing or unknown, or says the bundle has
    none."""
    if bundle.task is not None and task in (None, bundle.task):
        return bundle
    where = f"bundle {bundle.path}" if bundle.path is not None else "this bundle"
    ids = [t.env_spec.id for t in bundle.tasks]
    index = task_index(task, bundle.task_names, ids, where, bundle.env_spec.id)
    return bundle if index is None else bundle.for_task(bundle.task_names[index])


class DreamSimulator(DreamBackend):
    """``num_envs`` dreamed episodes of one world model, batched on ``device`` (the torch backend).

    - :meth:`reset` draws start states from the bundle's bank (reproducible from ``seed``);
    - :meth:`step` applies the prior transition, the reward and discount heads, the time limit and the
      autoreset mode (see :meth:`~wmsim.dream.backend.DreamBackend.step`);
    - ``differentiable=True`` keeps the autograd graph through steps;
    - ``task=`` picks the task of a multi-task bundle (required there): the dream then speaks that
      task's real action and observation sizes and pads them for the model inside.

    The latent state is ``deter (B, D)`` and ``stoch (B, S, K)`` in ``dtype``; :attr:`feat` is their
    concatenation ``(B, D + S*K)``, the ``latent`` observation.
    """

    name = "torch"
    xp = torch

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike,
        num_envs: int,
        *,
        device: torch.device | str = "cpu",
        time_limit: int | None = None,
        termination: str = "threshold",
        autoreset: str = "next_step",
        seed: int | None = None,
        dtype: str | torch.dtype = torch.float32,
        task: str | None = None,
    ) -> None:
        num_envs = check_num_envs(num_envs)
        check_time_limit(time_limit)
        bundle = bundle_for_task(resolve_model(bundle), task)
        compute = _dtype(dtype)
        self.device = resolve_device(device)
        # A private copy: the bundle's model may be shared (cached) by envs on other devices or dtypes.
        self.model: WorldModel = copy.deepcopy(bundle.model).to(self.device, compute).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.bundle = bundle
        rssm, io = self.model.config.rssm, self.model.io
        self.dims = ModelDims(
            rssm.deter, rssm.stoch, rssm.classes, io.action_size, io.discrete, tuple(io.obs_shape), io.image
        )
        self.spaces = bundle.spaces
        starts = bundle.start_states
        self.bank_size = len(starts)
        self._bank_deter = starts.deter.to(self.device, compute)
        self._bank_stoch = torch.nn.functional.one_hot(starts.stoch.to(self.device).long(), rssm.classes).to(
            compute
        )
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed if seed is not None else secrets.randbits(63))
        self.deter = torch.zeros(num_envs, rssm.deter, device=self.device, dtype=compute)
        self.stoch = torch.zeros(num_envs, rssm.stoch, rssm.classes, device=self.device, dtype=compute)
        self._obs_bounds: tuple[torch.Tensor, torch.Tensor] | None = None
        if not io.image:
            box: Any = space_from_dict(bundle.spaces["observation"])
            self._obs_bounds = (
                torch.as_tensor(box.low, device=self.device, dtype=torch.float32),
                torch.as_tensor(box.high, device=self.device, dtype=torch.float32),
            )
        limit = time_limit if time_limit is not None else bundle.env_spec.time_limit
        super().__init__(num_envs, time_limit=limit, termination=termination, autoreset=autoreset)

    # ------------------------------------------------------------------ state
    @property
    def feat(self) -> torch.Tensor:
        """Latent features ``(B, D + S*K)`` in the compute dtype."""
        return torch.cat([self.deter, self.stoch.flatten(-2)], -1)

    @property
    def state(self) -> State:
        return State(self.deter, self.stoch, self.stoch)

    def _split(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.dims
        feat = feat.to(self.deter.dtype)
        return feat[:, : d.deter], feat[:, d.deter :].unflatten(-1, (d.stoch, d.classes))

    def decode(self, feat: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded observations in the real env's format: uint8 ``(B, H, W, C)``, or float32 ``(B, D)``
        clipped to the real observation space."""
        feat = self.feat if feat is None else feat
        obs = self.model.obs_from_output(self.model.decode(feat.to(self.deter.dtype)))
        if self._obs_bounds is None:
            return obs
        return torch.clamp(obs.float(), *self._obs_bounds)

    @torch.no_grad()
    def posterior(
        self, obs: torch.Tensor, feat: torch.Tensor | None = None, action: torch.Tensor | None = None
    ) -> torch.Tensor:
        model, d, dtype = self.model, self.dims, self.deter.dtype
        n = obs.shape[0]
        obs = obs.to(self.device)
        if feat is None or action is None:
            prev = model.rssm.initial(n, self.device).map(lambda t: t.to(dtype))
            action_vec = torch.zeros(n, d.action_size, device=self.device, dtype=dtype)
            first = torch.ones(n, dtype=torch.bool, device=self.device)
        else:
            deter, stoch = self._split(feat)
            prev = State(deter, stoch, stoch)
            action_vec = model.one_hot(action).to(dtype)
            first = torch.zeros(n, dtype=torch.bool, device=self.device)
        # two draws, the prior's sample (which the posterior does not use) and the posterior's, so a
        # seed gives the filter the same samples as ever
        noise = [
            torch.rand(n, d.stoch, d.classes, device=self.device, generator=self.generator) for _ in range(2)
        ]
        post, _ = model.obs_step(prev, action_vec, obs, first, noise=(noise[0], noise[1]))
        return post.feat

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def start_features(self) -> np.ndarray:
        return torch.cat([self._bank_deter, self._bank_stoch.flatten(-2)], -1).float().cpu().numpy()

    def from_numpy(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def to_numpy(self, array: torch.Tensor) -> np.ndarray:
        array = array.detach()
        if array.is_floating_point() and array.dtype != torch.float32:
            array = array.float()
        return array.cpu().numpy().copy() if array.device.type == "cpu" else array.cpu().numpy()

    # ------------------------------------------------------------------ primitives
    def _zeros(self, dtype: str) -> torch.Tensor:
        kind = torch.int64 if dtype == "int64" else torch.bool
        return torch.zeros(self.num_envs, dtype=kind, device=self.device)

    def _uniform(self) -> torch.Tensor:
        return torch.rand(self.num_envs, device=self.device, generator=self.generator)

    def _start(self, mask: torch.Tensor, index: torch.Tensor | None) -> None:
        if index is None:
            index = torch.randint(
                self.bank_size, (self.num_envs,), device=self.device, generator=self.generator
            )
        self.deter = torch.where(mask[:, None], self._bank_deter[index], self.deter)
        self.stoch = torch.where(mask[:, None, None], self._bank_stoch[index], self.stoch)

    def _set_feat(self, mask: torch.Tensor, feat: torch.Tensor) -> None:
        deter, stoch = self._split(feat)
        self.deter = torch.where(mask[:, None], deter, self.deter)
        self.stoch = torch.where(mask[:, None, None], stoch, self.stoch)

    def _transition(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model, d = self.model, self.dims
        action_vec = (model.one_hot(action) if d.discrete else action).to(self.deter.dtype)
        noise = torch.rand(self.num_envs, d.stoch, d.classes, device=self.device, generator=self.generator)
        nxt, reward, cont = model.step(State(self.deter, self.stoch, self.stoch), action_vec, noise=noise)
        self.deter, self.stoch = nxt.deter, nxt.stoch
        return reward.float(), cont

    # ------------------------------------------------------------------ step
    def step(self, action: torch.Tensor, *, differentiable: bool = False) -> StepResult:
        """Advance every env by one dreamed step (see :meth:`DreamBackend.step`).

        ``action``: ``(B,)`` integer indices for a discrete model, ``(B, A)`` floats for a continuous one
        (validated by the callers at the API edge). With ``differentiable=True`` the step keeps the
        autograd graph, so gradients flow from the returned reward and :attr:`feat` back into
        ``action`` and earlier states (straight-through through the categorical samples).
        """
        with torch.set_grad_enabled(differentiable):
            return super().step(action)
