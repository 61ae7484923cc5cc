"""Data-parallel training with ``torch.distributed``: who this process is, gradient all-reduce, and
the checks that make a bad launch fail with a clear error instead of hanging.

Launch with ``torchrun`` (one node or several; its rendezvous sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``). Without those variables, or with
``WORLD_SIZE=1``, everything here is a no-op and training is the plain single-process loop.

The rule for batch and learning rate: ``batch_size`` is the *global* batch. Each of ``N`` ranks trains
on ``batch_size / N`` sequences of its own replay shard, the gradients are averaged over the ranks
(all-reduce), and the learning rate is unchanged. Every loss is a mean over its batch, so the averaged
gradient is the gradient of the global batch: ``N`` ranks take the optimiser steps that one process
would take on the union of their batches. Env steps, prefill, ``train_every`` and the log, checkpoint
and evaluation periods count env steps of all ranks together; ``replay_capacity`` is shared out too.

Backends: NCCL when the device is a GPU (rank ``r`` uses ``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist
from torch import nn

from wmsim.devices import resolve_device

T = TypeVar("T")

#: Rank ``r`` seeds its envs, replay sampling and latent noise with ``seed + RANK_SEED_STRIDE * r``
#: (rank 0 keeps the configured seed). Episode seeds count up from there, so ranks never share one
#: for the first ten million episodes; ranks up to 400 stay below 2**32 (dm_control's limit).
RANK_SEED_STRIDE = 10_000_000


class DistributedError(ValueError):
    """A launch the ranks cannot train together with (mismatched configs, a batch that does not split,
    a failure on another rank)."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. ``Dist()`` is a single process: every method is then local."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = field(default=None, compare=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's seed for envs, replay sampling and latent noise."""
        return seed + RANK_SEED_STRIDE * self.rank

    def share(self, total: int) -> int:
        """This rank's part of a count shared out over the ranks (rounded up)."""
        return math.ceil(total / self.world_size)

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` is true on every rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self._comm_device())
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MIN)
        return bool(value.item() > 0.5)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of ``values`` over the ranks (a new tensor)."""
        if not self.enabled:
            return values
        out = values.detach().to(self._comm_device(), torch.float32, copy=True)
        torch_dist.all_reduce(out)
        return out / self.world_size

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        out = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        torch_dist.all_reduce(out)
        return float(out.item())

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result to every rank. Doubles as a barrier: the
        other ranks wait for rank 0; an exception on rank 0 is raised on every rank, so nobody is
        left waiting in a later collective."""
        if not self.enabled:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except Exception as exc:
                torch_dist.broadcast_object_list([("error", f"{type(exc).__name__}: {exc}")], src=0)
                raise
        torch_dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise DistributedError(f"rank 0 failed, so rank {self.rank} stops too: {value}")
        return value

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into ``module`` on every rank."""
        if self.enabled:
            for tensor in module.state_dict().values():
                torch_dist.broadcast(tensor, src=0)

    def _comm_device(self) -> torch.device:
        if self.device is not None and self.device.type == "cuda":
            return self.device
        return torch.device("cpu")


def current() -> Dist:
    """The ``Dist`` of an already initialised default process group, else a single process."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return Dist()
    world = torch_dist.get_world_size()
    if world == 1:
        return Dist()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if torch_dist.get_backend() == "nccl" else torch.device("cpu")
    return Dist(torch_dist.get_rank(), world, local, device)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"environment variable {name}={text!r} is not an integer") from None


def rank_device(requested: str | torch.device, local_rank: int) -> torch.device:
    """The device of a rank: ``cuda:LOCAL_RANK`` when ``requested`` is a GPU (or ``auto`` on a GPU
    machine), else the CPU."""
    device = resolve_device(requested)
    if device.type != "cuda":
        return device
    if device.index is not None and device.index != local_rank:
        raise DistributedError(
            f"device {str(requested)!r} under torchrun: every rank uses the GPU of its LOCAL_RANK;"
            " pass --device cuda (or auto)"
        )
    if local_rank >= torch.cuda.device_count():
        raise DistributedError(
            f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPU(s): launch at most"
            f" {torch.cuda.device_count()} processes per node (--nproc_per_node)"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def launch(device: str | torch.device = "auto", timeout_s: float = 1800.0) -> Iterator[Dist]:
    """Join the torchrun job described by the environment (or stay a single process).

    Initialises the default process group (NCCL for GPUs, gloo for the CPU) with ``timeout_s`` as the
    limit on any collective, so a rank that stops answering ends the job with an error instead of a
    hang, and destroys it on exit. Reuses a process group the caller initialised already.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        yield current()
        return
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        yield Dist(device=resolve_device(device))
        return
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    where = rank_device(device, local)
    backend = "nccl" if where.type == "cuda" else "gloo"
    torch_dist.init_process_group(
        backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s)
    )
    try:
        yield Dist(rank, world, local, where)
    finally:
        torch_dist.destroy_process_group()


def local_batch(batch_size: int, world_size: int) -> int:
    """Each rank's part of the global ``batch_size``; raises when it does not split evenly."""
    if batch_size % world_size:
        lower = batch_size - batch_size % world_size
        raise DistributedError(
            f"batch_size={batch_size} is the global batch and must split evenly over {world_size} ranks:"
            f" use --batch_size {lower or world_size} or {lower + world_size}, or launch a number of"
            " processes that divides it"
        )
    return batch_size // world_size


def check_same_config(dist: Dist, config: dict[str, Any]) -> None:
    """Raise on every rank when the ranks were launched with different configs (e.g. two nodes with
    different command lines), naming the options that differ."""
    if not dist.enabled:
        return
    mine = {**config, "torch": torch.__version__}
    everyone = dist.gather(mine)
    reference = everyone[0]
    for rank, other in enumerate(everyone):
        differs = sorted(k for k in set(reference) | set(other) if reference.get(k) != other.get(k))
        if differs:
            detail = ", ".join(f"{k}={other.get(k)!r} (rank 0: {reference.get(k)!r})" for k in differs[:6])
            raise DistributedError(
                f"the ranks were launched with different training configs: rank {rank} has {detail}."
                " Start every rank with the same options and the same wmsim and torch versions."
            )


class GradientSync:
    """Averages the gradients of ``params`` over all ranks at the end of every backward pass that
    reaches them, before the caller clips them and steps its optimiser.

    The world model is trained through ``WorldModel.loss`` and the actor-critic calls its networks many
    times per update, so instead of ``DistributedDataParallel`` (which hooks ``forward``) this hooks
    autograd: each parameter reports when its gradient of the pass is complete, and one callback at the
    end of the pass all-reduces those gradients as a single flat buffer. The code that computes the
    losses, clips and steps the optimisers is the single-process code, unchanged.
    """

    def __init__(self, params: Iterable[nn.Parameter], dist: Dist) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.dist = dist
        self._done: set[int] = set()  # indices into params whose gradient this pass is complete
        self._handles = [
            p.register_post_accumulate_grad_hook(functools.partial(self._on_grad, i))
            for i, p in enumerate(self.params)
        ]

    def _on_grad(self, index: int, _param: torch.Tensor) -> None:
        if not self._done:
            torch.autograd.Variable._execution_engine.queue_callback(self._all_reduce)
        self._done.add(index)

    def _all_reduce(self) -> None:
        grads = [self.params[i].grad for i in sorted(self._done)]
        self._done = set()
        flat = torch.cat([g.reshape(-1) for g in grads if g is not None])
        torch_dist.all_reduce(flat)
        flat /= self.dist.world_size
        offset = 0
        for grad in grads:
            if grad is not None:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def parameter_digest(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, dtypes and exact bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
