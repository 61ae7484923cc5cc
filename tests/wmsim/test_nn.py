"""The one-hot fast path of linear layers over model-state features: the same numbers as the dense
product, forward and backward, and the same world-model and actor-critic updates."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from wmsim.config import model_preset
from wmsim.nn import SegmentLinear, dense_products, one_hot_gather
from wmsim.rssm import sample_one_hot
from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer


def _features(n: int, deter: int, stoch: int, classes: int) -> torch.Tensor:
    logits = torch.randn(n, stoch, classes, requires_grad=True)
    onehot = sample_one_hot(logits)  # straight-through: one-hot values, gradients of the probabilities
    onehot = torch.cat([onehot[:-1], torch.zeros_like(onehot[-1:])])  # an all-zero initial state
    return torch.cat([torch.randn(n, deter), onehot.flatten(1)], -1)


@pytest.mark.parametrize("batch_shape", [(7,), (3, 5)])
def test_segment_linear_matches_the_dense_product_forward_and_backward(batch_shape: tuple) -> None:
    torch.manual_seed(0)
    deter, stoch, classes = 6, 4, 5
    layer = SegmentLinear(deter + stoch * classes, 3, ((deter, 0), (stoch * classes, classes)))
    dense = copy.deepcopy(layer)
    n = int(torch.tensor(batch_shape).prod())
    feat = _features(n, deter, stoch, classes).detach().reshape(*batch_shape, -1)
    fast_in, dense_in = feat.clone().requires_grad_(), feat.clone().requires_grad_()
    with one_hot_gather():
        fast_out = layer(fast_in)
    dense_out = dense(dense_in)  # the default
    assert fast_out.shape == (*batch_shape, 3)
    torch.testing.assert_close(fast_out, dense_out, atol=1e-6, rtol=1e-6)
    grad = torch.randn_like(fast_out)
    fast_out.backward(grad)
    dense_out.backward(grad)
    torch.testing.assert_close(fast_in.grad, dense_in.grad, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(layer.weight.grad, dense.weight.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.bias.grad, dense.bias.grad)
    assert set(layer.state_dict()) == {"weight", "bias"}  # an nn.Linear's state dict


def test_segment_layout_is_checked() -> None:
    with pytest.raises(ValueError, match="do not add up"):
        SegmentLinear(10, 2, ((4, 0), (5, 5)))
    with pytest.raises(ValueError, match="does not hold 4-class"):
        SegmentLinear(10, 2, ((4, 0), (6, 4)))


@pytest.mark.parametrize("image", [False, True], ids=["vector", "image"])
def test_world_model_update_is_the_same_with_the_fast_path(image: bool) -> None:
    torch.manual_seed(0)
    io = IOSpec((64, 64, 1), True, 3, True) if image else IOSpec((5,), False, 2, True)
    model = WorldModel(model_preset("tiny"), io)
    twin = copy.deepcopy(model)
    obs = torch.randint(0, 256, (2, 6, 64, 64, 1), dtype=torch.uint8) if image else torch.randn(2, 6, 5)
    is_first = torch.zeros(2, 6, dtype=torch.bool)
    is_first[:, 0] = True
    batch = {
        "obs": obs,
        "action": F.one_hot(torch.randint(0, io.action_size, (2, 6)), io.action_size).float(),
        "reward": torch.randn(2, 6),
        "is_first": is_first,
        "is_terminal": torch.zeros(2, 6, dtype=torch.bool),
    }
    torch.manual_seed(1)
    with one_hot_gather():
        _, fast = WorldModelTrainer(model, precision="fp32").train_step(batch)
    torch.manual_seed(1)
    with dense_products():
        _, plain = WorldModelTrainer(twin, precision="fp32").train_step(batch)
    for key in ("model_loss", "kl", "obs_loss", "reward_loss", "model_grad_norm"):
        torch.testing.assert_close(fast[key], plain[key], atol=1e-5, rtol=1e-4)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_inputs_that_are_not_one_hot_take_the_dense_product() -> None:
    torch.manual_seed(0)
    layer = SegmentLinear(2 + 3 * 4, 5, ((2, 0), (12, 4)))
    features = torch.randn(6, 14)  # not one-hot: hand-made features
    expected = layer(features)
    with one_hot_gather():
        torch.testing.assert_close(layer(features), expected)


def test_bf16_autocast_update_stays_close_to_fp32() -> None:
    # The fast path of image models on CPUs with native bfloat16: the same update to within the
    # precision of bf16 (8 bits of mantissa), on the same weights, data and samples.
    torch.manual_seed(0)
    io = IOSpec((64, 64, 1), True, 3, True)
    model = WorldModel(model_preset("tiny"), io)
    twin = copy.deepcopy(model)
    batch = {
        "obs": torch.randint(0, 256, (2, 6, 64, 64, 1), dtype=torch.uint8),
        "action": F.one_hot(torch.randint(0, 3, (2, 6)), 3).float(),
        "reward": torch.randn(2, 6),
        "is_first": torch.zeros(2, 6, dtype=torch.bool),
        "is_terminal": torch.zeros(2, 6, dtype=torch.bool),
    }
    torch.manual_seed(1)
    _, low = WorldModelTrainer(model, precision="bf16").train_step(batch)
    torch.manual_seed(1)
    _, full = WorldModelTrainer(twin, precision="fp32").train_step(batch)
    for key in ("model_loss", "obs_loss"):
        torch.testing.assert_close(low[key], full[key], rtol=1e-3, atol=1e-3)
    # The reward head sees bf16-rounded latent samples (a few flip): close, not equal.
    torch.testing.assert_close(low["reward_loss"], full["reward_loss"], rtol=0.15, atol=1e-3)


@pytest.mark.parametrize("kernels", [(5, 5, 6, 6), (6,)])
def test_decoder_first_layer_as_a_product_matches_the_transposed_convolution(kernels: tuple) -> None:
    from wmsim.nn import ConvDecoder

    torch.manual_seed(0)
    decoder = ConvDecoder(30, 3, 4, kernels)
    feat = torch.randn(2, 5, 30, requires_grad=True)
    out = decoder(feat)
    # the reference: the whole stack of transposed convolutions on the 1x1 map
    reference = decoder.net(decoder.linear(feat).reshape(-1, decoder.in_channels, 1, 1))
    assert out.shape == (2, 5, *reference.shape[-3:])
    torch.testing.assert_close(out, reference.reshape(out.shape), atol=1e-6, rtol=1e-5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [feat, *decoder.parameters()], grad)
    want = torch.autograd.grad(reference.reshape(out.shape), [feat, *decoder.parameters()], grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
