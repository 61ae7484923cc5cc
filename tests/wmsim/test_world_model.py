"""World model shapes for every preset, configs that round-trip, bundles that load strictly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from wmsim.bundle import BundleError, encode_start_states, load_bundle, save_bundle
from wmsim.config import (
    MODEL_PRESETS,
    WorldModelConfig,
    apply_overrides,
    from_dict,
    from_json,
    model_preset,
    to_dict,
    to_json,
)
from wmsim.envs import EnvSpec
from wmsim.world_model import OBJECT_THRESHOLD, IOSpec, WorldModel, object_weight

IMAGE_IO = IOSpec((64, 64, 1), True, 6, True)
VECTOR_IO = IOSpec((5,), False, 1, False)


def _batch(io: IOSpec, b: int = 2, t: int = 3) -> dict[str, torch.Tensor]:
    obs = (
        torch.randint(0, 256, (b, t, *io.obs_shape), dtype=torch.uint8)
        if io.image
        else torch.randn(b, t, *io.obs_shape)
    )
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    return {
        "obs": obs,
        "action": torch.randn(b, t, io.action_size),
        "reward": torch.randn(b, t),
        "is_first": is_first,
        "is_terminal": torch.zeros(b, t, dtype=torch.bool),
    }


@pytest.mark.parametrize("preset", list(MODEL_PRESETS))
@pytest.mark.parametrize("io", [IMAGE_IO, VECTOR_IO], ids=["image", "vector"])
def test_shapes_for_every_preset(preset: str, io: IOSpec) -> None:
    torch.manual_seed(0)
    config = model_preset(preset)
    model = WorldModel(config, io)
    loss, posts, metrics = model.loss(_batch(io))
    r = config.rssm
    assert posts.deter.shape == (2, 3, r.deter)
    assert posts.stoch.shape == (2, 3, r.stoch, r.classes)
    assert posts.feat.shape == (2, 3, r.deter + r.stoch * r.classes)
    assert model.decode(posts.feat).shape == ((2, 3, 1, 64, 64) if io.image else (2, 3, 5))
    assert torch.isfinite(loss)
    assert ("discount_loss" in metrics) == config.pred_discount
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    _, reward, cont = model.step(posts.map(lambda x: x[:, -1]), torch.randn(2, io.action_size))
    assert reward.shape == (2,) and cont.shape == (2,)
    assert bool(((cont >= 0) & (cont <= 1)).all())


def test_paper_presets_hold_the_paper_values() -> None:
    atari = model_preset("atari")
    assert (atari.rssm.deter, atari.rssm.hidden, atari.rssm.stoch, atari.rssm.classes) == (600, 600, 32, 32)
    assert atari.loss.kl_balance == 0.8 and atari.loss.kl_scale == 0.1 and atari.loss.discount_scale == 5.0
    assert atari.optim.lr == 2e-4 and atari.discount == 0.999 and atari.reward_transform == "tanh"
    assert atari.encoder.cnn_depth == 48 and atari.decoder.cnn_kernels == (5, 5, 6, 6)
    dmc = model_preset("dmc_vision")
    assert dmc.rssm.deter == 200 and dmc.loss.kl_free == 1.0 and dmc.loss.kl_scale == 1.0
    assert not dmc.pred_discount and dmc.optim.lr == 3e-4 and dmc.discount == 0.99


@pytest.mark.parametrize("preset", list(MODEL_PRESETS))
def test_config_json_round_trip(preset: str) -> None:
    config = model_preset(preset)
    assert from_json(WorldModelConfig, to_json(config)) == config


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="Did you mean 'atari'"):
        model_preset("atary")
    data = to_dict(model_preset("small"))
    data["rssm"]["deterr"] = 3
    with pytest.raises(ValueError, match=r"config\.rssm: unknown key\(s\) \['deterr'\]"):
        from_dict(WorldModelConfig, data)
    data = to_dict(model_preset("small"))
    data["rssm"]["deter"] = "big"
    with pytest.raises(ValueError, match=r"config\.rssm\.deter: expected an integer"):
        from_dict(WorldModelConfig, data)
    with pytest.raises(ValueError, match="reward_transform"):
        WorldModelConfig(reward_transform="log")
    with pytest.raises(ValueError, match=r"option 'rssm\.deteer'.*Did you mean 'deter'"):
        apply_overrides(model_preset("small"), {"rssm.deteer": 3})
    assert apply_overrides(model_preset("small"), {"rssm.deter": 7}).rssm.deter == 7


def test_unsupported_spaces_are_refused_with_a_fix() -> None:
    with pytest.raises(ValueError, match="1-D Box"):
        IOSpec.from_spaces(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Discrete(2))
    with pytest.raises(ValueError, match="size=\\(64, 64\\)"):
        IOSpec.from_spaces(gym.spaces.Box(0, 255, (84, 84, 1), np.uint8), gym.spaces.Discrete(2))
    with pytest.raises(ValueError, match="Discrete or a 1-D Box"):
        IOSpec.from_spaces(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.MultiDiscrete([2, 2]))


def _bundle(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = WorldModel(model_preset("tiny"), VECTOR_IO)
    starts = encode_start_states(model, torch.randn(7, 5))
    spec = EnvSpec.from_id("Pendulum-v1")
    spaces = {"observation": {"type": "Box"}, "action": {"type": "Box"}}
    return save_bundle(tmp_path / "b", model, spec, spaces, starts, {"note": "test"})


def test_bundle_round_trip_is_bit_identical(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WorldModel(model_preset("tiny"), VECTOR_IO)
    path = _bundle(tmp_path)
    loaded = load_bundle(path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.config == model.config and loaded.model.io == VECTOR_IO
    assert len(loaded.start_states) == 7 and loaded.info == {"note": "test"}
    assert loaded.env_spec == EnvSpec.from_id("Pendulum-v1")
    state = loaded.start_states.state(torch.tensor([0, 3]), classes=4)
    assert state.stoch.shape == (2, 4, 4) and torch.allclose(state.stoch.sum(-1), torch.ones(2, 4))


def test_bundle_errors_name_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no bundle directory"):
        load_bundle(tmp_path / "nothing")
    path = _bundle(tmp_path)
    config = json.loads((path / "config.json").read_text())

    (path / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99"):
        load_bundle(path)
    (path / "config.json").write_text(json.dumps({**config, "format": "something-else"}))
    with pytest.raises(BundleError, match="not a wmsim bundle"):
        load_bundle(path)
    other = dict(config)
    other["model"] = {**config["model"], "rssm": {**config["model"]["rssm"], "deter": 64}}
    (path / "config.json").write_text(json.dumps(other))
    with pytest.raises(BundleError, match=r"rssm\.gru.*where the config implies"):
        load_bundle(path)
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(BundleError, match=r"model\.safetensors is not a readable safetensors file"):
        load_bundle(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(BundleError, match=r"model\.safetensors is missing"):
        load_bundle(path)


def test_object_weight_marks_missing_and_spurious_objects() -> None:
    # a static background of 0.1 with one bright dot per frame, moving along the diagonal
    target = torch.full((2, 4, 1, 8, 8), 0.1)
    for i in range(8):
        target[i // 4, i % 4, 0, i, i] = 0.45
    pred = torch.full_like(target, 0.1)
    pred[0, 1, 0, 7, 0] = 0.3  # a dot drawn where there is none
    weight = object_weight(target, pred, 10.0)
    expected = torch.ones_like(target)
    expected[target != 0.1] = 10.0
    expected[0, 1, 0, 7, 0] = 10.0
    assert torch.equal(weight, expected)
    # contrast below OBJECT_THRESHOLD (on the [0, 1] scale) is background
    faint = target.clone()
    faint[0, 0, 0, 3, 4] = 0.1 + 0.9 * OBJECT_THRESHOLD
    assert object_weight(faint, pred, 10.0)[0, 0, 0, 3, 4] == 1.0


@pytest.mark.parametrize("io", [IMAGE_IO, VECTOR_IO], ids=["image", "vector"])
def test_object_scale_weights_only_object_pixels_of_images(io: IOSpec) -> None:
    torch.manual_seed(0)
    plain = WorldModel(model_preset("tiny"), io)
    weighted_config = apply_overrides(model_preset("tiny"), {"loss.object_scale": 10.0})
    weighted = WorldModel(weighted_config, io)
    weighted.load_state_dict(plain.state_dict())
    batch = _batch(io)
    torch.manual_seed(1)
    loss, posts, metrics = plain.loss(batch)
    torch.manual_seed(1)
    weighted_loss, _, weighted_metrics = weighted.loss(batch)
    # the reported image NLL stays DreamerV2's, whatever the weights the optimiser sees
    assert torch.allclose(metrics["obs_loss"], weighted_metrics["obs_loss"])
    if not io.image:
        assert torch.allclose(loss, weighted_loss)
        return
    with torch.no_grad():
        target = plain.prepare_obs(batch["obs"])
        pred = plain.decode(posts.feat)
        extra = 0.5 * ((object_weight(target, pred, 10.0) - 1.0) * (pred - target).pow(2)).sum((2, 3, 4))
    assert extra.mean() > 0
    assert torch.allclose(weighted_loss - loss, extra.mean(), rtol=1e-4)
    with pytest.raises(ValueError, match="object_scale"):
        apply_overrides(model_preset("tiny"), {"loss.object_scale": 0.5})


def test_reward_event_scale_weights_only_steps_with_a_reward() -> None:
    torch.manual_seed(0)
    plain = WorldModel(model_preset("tiny"), VECTOR_IO)
    weighted = WorldModel(apply_overrides(model_preset("tiny"), {"loss.reward_event_scale": 20.0}), VECTOR_IO)
    weighted.load_state_dict(plain.state_dict())
    batch = _batch(VECTOR_IO, t=8)
    batch["reward"] = torch.zeros_like(batch["reward"])
    batch["reward"][0, 3] = 1.0
    batch["reward"][1, 5] = -1.0
    torch.manual_seed(1)
    loss, posts, metrics = plain.loss(batch)
    torch.manual_seed(1)
    weighted_loss, _, weighted_metrics = weighted.loss(batch)
    assert torch.allclose(metrics["reward_loss"], weighted_metrics["reward_loss"])  # reported unweighted
    with torch.no_grad():
        error = (plain.reward(posts.feat) - plain.transform_reward(batch["reward"])).pow(2)
    # only the two scoring steps gain weight: 19 more times their half squared error, over all B * T
    extra = 0.5 * 19.0 * (error[0, 3] + error[1, 5]) / error.numel()
    assert extra > 0
    assert torch.allclose(weighted_loss - loss, extra, rtol=1e-4)
    with pytest.raises(ValueError, match="reward_event_scale"):
        apply_overrides(model_preset("tiny"), {"loss.reward_event_scale": 0.5})


def test_layers_start_glorot_uniform_with_zero_biases() -> None:
    # DreamerV2's Keras defaults; PyTorch's own draw U(+-1/sqrt(fan_in)) weights and non-zero biases.
    torch.manual_seed(0)
    model = WorldModel(model_preset("small"), IMAGE_IO)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    layers += [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(layers) > 10
    for layer in layers:
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound, layer
        assert layer.bias is None or not layer.bias.any(), layer


def test_weight_decay_shrinks_weights_by_the_same_factor_whatever_the_learning_rate() -> None:
    # DreamerV2 multiplies every weight by (1 - wd) at each step; with zero gradients Adam moves
    # nothing else, so one step leaves exactly (1 - wd) * w. AdamW's own weight_decay=wd would
    # multiply by (1 - lr * wd), 5,000 times weaker at lr 2e-4.
    from wmsim.world_model import WorldModelTrainer

    for lr in (1e-4, 1e-2):
        torch.manual_seed(0)
        base = model_preset("tiny")
        config = dataclasses.replace(base, optim=dataclasses.replace(base.optim, lr=lr, weight_decay=1e-3))
        model = WorldModel(config, VECTOR_IO)
        trainer = WorldModelTrainer(model, precision="fp32")
        before = [p.detach().clone() for p in model.parameters()]
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        trainer.optimizer.step()
        for new, old in zip(model.parameters(), before, strict=True):
            assert torch.allclose(new, old * (1 - 1e-3), atol=1e-9, rtol=1e-6)
