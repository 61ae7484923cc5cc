"""Small network building blocks of DreamerV2: MLP, CNN encoder, transposed-CNN decoder, the
layer-normalised GRU cell, and the official code's initialisation and optimiser."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def init_glorot_(module: nn.Module) -> nn.Module:
    """DreamerV2's initialisation (the Keras defaults of the official code), in place: Glorot-uniform
    weights and zero biases for every linear layer and (transposed) convolution in ``module``.
    PyTorch's defaults draw smaller weights (``U(+-1/sqrt(fan_in))``) and non-zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def dreamer_adam(
    params: Iterable[nn.Parameter], lr: float, eps: float, weight_decay: float
) -> torch.optim.AdamW:
    """Adam with DreamerV2's weight decay: every step first multiplies each weight by
    ``1 - weight_decay``, whatever the learning rate (the official ``var.assign((1 - wd) * var)``).
    AdamW decays by ``lr * coefficient``, so the coefficient is ``weight_decay / lr``."""
    if lr <= 0:
        raise ValueError(f"learning rate {lr} must be positive")
    return torch.optim.AdamW(params, lr=lr, eps=eps, weight_decay=weight_decay / lr)


#: The layout of a linear layer's input: ``(size, classes)`` per segment, in order; ``classes == 0``
#: marks a dense segment, ``classes == K`` a segment of ``size // K`` one-hot categorical variables.
Segments = tuple[tuple[int, int], ...]


class _Switch:
    enabled = False


_GATHER = _Switch()


@contextlib.contextmanager
def one_hot_gather(enabled: bool = True) -> Iterator[None]:
    """Within the block, :class:`SegmentLinear` layers multiply their one-hot segments by gathering
    the weight columns they select (``enabled=False``: the plain dense product, the default). The
    gather does 32 times fewer multiplications for 32 x 32 latents, but on the 2-core CPUs measured
    (docs/benchmarks/train_full_cpu.md) finding the selected columns costs more than the dense
    product saves, so it is off unless asked for (benchmarks and checks)."""
    previous, _GATHER.enabled = _GATHER.enabled, enabled
    try:
        yield
    finally:
        _GATHER.enabled = previous


def dense_products() -> contextlib.AbstractContextManager[None]:
    """Within the block, :class:`SegmentLinear` layers take the plain dense product."""
    return one_hot_gather(False)


class _OneHotProduct(torch.autograd.Function):
    """``onehot (N, S, K) -> onehot.flatten(1) @ weight.T``, ``weight: (O, S*K)``, for rows that are
    one-hot per variable (or all zero): each variable adds the one column it selects (``S`` columns
    per row, not ``S*K``), times the selected entry's value (1, or 0 for an all-zero variable).

    The backward pass is the plain one (dense products, which the matrix units do faster than a
    scatter of ``N * S`` rows), so straight-through gradients into the class probabilities and the
    weight gradients are those of the dense product.
    """

    @staticmethod
    def forward(ctx: Any, onehot: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        _, variables, classes = onehot.shape
        ctx.save_for_backward(onehot, weight)
        # One pass over the rows finds each variable's class and value: (sum_k k x_k, sum_k x_k).
        probe = torch.stack([torch.arange(classes), torch.ones(classes)], -1).to(onehot)
        weighted, value = (onehot.reshape(-1, classes) @ probe).float().reshape(-1, variables, 2).unbind(-1)
        position = weighted / value.clamp(min=1e-6)
        index = position.round()
        # Rows that are not one-hot (hand-made features) take the dense product: never a wrong result.
        if bool(((position - index).abs() > 1e-3).any() | ((value - value.round()).abs() > 1e-3).any()):
            return onehot.flatten(1) @ weight.t()
        flat = index.long().clamp(0, classes - 1) + classes * torch.arange(variables, device=onehot.device)
        columns = weight.t().contiguous()  # embedding_bag is slow on a strided table
        return F.embedding_bag(flat, columns, per_sample_weights=value.to(weight.dtype), mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        onehot, weight = ctx.saved_tensors
        grad_onehot = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_onehot = (grad @ weight.to(grad.dtype)).reshape(onehot.shape).to(onehot.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = (grad.t() @ onehot.flatten(1).to(grad.dtype)).to(weight.dtype)
        return grad_onehot, grad_weight


class SegmentLinear(nn.Linear):
    """A linear layer over a concatenation of dense and one-hot segments (see :data:`Segments`), such
    as the model-state features ``concat(deter, flat(stoch))``. Same parameters and state dict as
    ``nn.Linear``; a one-hot segment is multiplied by gathering the weight columns it selects, which
    for DreamerV2's 32 x 32 latents is 32 times fewer multiplications than the dense product.

    The gather runs only inside :func:`one_hot_gather` (it is slower than the dense product on the CPUs
    measured). The one-hot segments hold one-hot rows per variable (or all-zero ones, the initial
    state) in every state of :class:`~wmsim.rssm.RSSM`; inputs that are not one-hot are detected and
    take the dense product. The gather is for CPUs; on GPUs and in exported graphs (ONNX) the layer
    is a plain ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int, segments: Segments, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if sum(size for size, _ in segments) != in_features:
            raise ValueError(f"segments {segments} do not add up to {in_features} input features")
        for size, classes in segments:
            if classes and size % classes:
                raise ValueError(
                    f"a one-hot segment of {size} features does not hold {classes}-class variables"
                )
        self.segments = segments

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        exporting = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
        # Under bf16 autocast the dense product is faster than the gather (measured on AVX512-BF16:
        # docs/benchmarks/train_full_cpu.md), so the fast path is for fp32 only.
        autocast = torch.is_autocast_enabled("cpu")
        if not _GATHER.enabled or exporting or autocast or inputs.device.type != "cpu":
            return super().forward(inputs)
        batch_shape = inputs.shape[:-1]
        flat = inputs.reshape(-1, inputs.shape[-1])
        out: torch.Tensor | None = None
        start = 0
        for size, classes in self.segments:
            part, weight = flat[:, start : start + size], self.weight[:, start : start + size]
            if classes:
                term = _OneHotProduct.apply(part.reshape(len(flat), size // classes, classes), weight)
            else:
                term = F.linear(part, weight)
            out = term if out is None else out + term
            start += size
        assert out is not None
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*batch_shape, self.out_features)


def _linear(in_size: int, out_size: int, segments: Segments | None) -> nn.Linear:
    return nn.Linear(in_size, out_size) if segments is None else SegmentLinear(in_size, out_size, segments)


class MLP(nn.Sequential):
    """``layers`` hidden ELU layers of ``units``, then a linear output of ``out_size``.
    ``segments``: the layout of the input (see :class:`SegmentLinear`), for inputs with one-hot parts.

    ``(..., in_size) -> (..., out_size)``.
    """

    def __init__(
        self, in_size: int, out_size: int, layers: int, units: int, segments: Segments | None = None
    ) -> None:
        modules: list[nn.Module] = []
        size = in_size
        for _ in range(layers):
            modules += [_linear(size, units, None if modules else segments), nn.ELU()]
            size = units
        modules.append(_linear(size, out_size, None if modules else segments))
        super().__init__(*modules)


class LayerNormGRUCell(nn.Module):
    """DreamerV2's GRU cell: one linear map of ``[input, state]`` to the three gates, layer norm over
    them, and an update gate biased towards keeping the state (``sigmoid(update - 1)``).

    ``input: (B, in_size), state: (B, size) -> new state (B, size)``.
    """

    def __init__(self, in_size: int, size: int, norm: bool = True) -> None:
        super().__init__()
        self.size = size
        self.linear = nn.Linear(in_size + size, 3 * size, bias=not norm)
        self.norm: nn.Module = nn.LayerNorm(3 * size) if norm else nn.Identity()

    def forward(self, inputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([inputs, state], -1)))
        reset, cand, update = parts.split(self.size, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * state


class ConvEncoder(nn.Module):
    """DreamerV2's image encoder: 4 stride-2 convolutions (kernel 4, no padding, ELU) of depth
    ``d, 2d, 4d, 8d``.

    ``(..., C, 64, 64) float in [-0.5, 0.5] -> (..., 32 * depth)``.
    """

    def __init__(self, channels: int, depth: int, kernels: tuple[int, ...], image_size: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, size = channels, image_size
        for i, kernel in enumerate(kernels):
            out_ch = depth * 2**i
            layers += [nn.Conv2d(in_ch, out_ch, kernel, stride=2), nn.ELU()]
            in_ch, size = out_ch, (size - kernel) // 2 + 1
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_size = in_ch * size * size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        batch_shape = image.shape[:-3]
        embed = self.net(image.reshape(-1, *image.shape[-3:]))
        return embed.reshape(*batch_shape, -1)


class ConvDecoder(nn.Module):
    """DreamerV2's image decoder: a linear map to ``32 * depth`` channels at 1x1, then transposed
    convolutions (kernels 5, 5, 6, 6; stride 2; ELU between) up to the image.

    ``(..., feat_size) -> (..., C, 64, 64)``: the mean of a unit-variance Gaussian over pixels in
    [-0.5, 0.5].
    """

    def __init__(
        self,
        feat_size: int,
        channels: int,
        depth: int,
        kernels: tuple[int, ...],
        segments: Segments | None = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.in_channels = 32 * depth
        self.linear = _linear(feat_size, self.in_channels, segments)
        layers: list[nn.Module] = []
        in_ch = self.in_channels
        for i, kernel in enumerate(kernels):
            last = i == len(kernels) - 1
            out_ch = channels if last else depth * 2 ** (len(kernels) - i - 2)
            layers.append(nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=2))
            if not last:
                layers.append(nn.ELU())
            in_ch = out_ch
        self.net = nn.Sequential(*layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        batch_shape = feat.shape[:-1]
        hidden = self.linear(feat).reshape(-1, self.in_channels)
        # The first transposed convolution sees a 1x1 input: it is a matrix product onto its k x k
        # output, which runs about 1.7x faster on a CPU than the convolution kernel (same weights).
        first = self.net[0]
        assert isinstance(first, nn.ConvTranspose2d)
        out_ch, kernel = first.out_channels, first.kernel_size
        image = hidden @ first.weight.reshape(self.in_channels, -1)
        image = image.reshape(-1, out_ch, *kernel) + first.bias.reshape(1, out_ch, 1, 1)  # type: ignore[union-attr]
        image = self.net[1:](image)
        return image.reshape(*batch_shape, *image.shape[-3:])
