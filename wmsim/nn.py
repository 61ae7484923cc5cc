"""Small network building blocks of DreamerV2: MLP, CNN encoder, transposed-CNN decoder, the
layer-normalised GRU cell, and the official code's initialisation and optimiser."""

from __future__ import annotations

from collections.abc import Iterable

import torch
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


class MLP(nn.Sequential):
    """``layers`` hidden ELU layers of ``units``, then a linear output of ``out_size``.

    ``(..., in_size) -> (..., out_size)``.
    """

    def __init__(self, in_size: int, out_size: int, layers: int, units: int) -> None:
        modules: list[nn.Module] = []
        size = in_size
        for _ in range(layers):
            modules += [nn.Linear(size, units), nn.ELU()]
            size = units
        modules.append(nn.Linear(size, out_size))
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

    def __init__(self, feat_size: int, channels: int, depth: int, kernels: tuple[int, ...]) -> None:
        super().__init__()
        self.channels = channels
        self.in_channels = 32 * depth
        self.linear = nn.Linear(feat_size, self.in_channels)
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
        hidden = self.linear(feat).reshape(-1, self.in_channels, 1, 1)
        image = self.net(hidden)
        return image.reshape(*batch_shape, *image.shape[-3:])
