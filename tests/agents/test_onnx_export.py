"""`wmsim export-onnx`: the policy graph matches the DreamerV2 actor, and the command reports bad input."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.cli import main as cli_main
from agents.dreamerv2.agent import ActorCritic, agent_from_bundle, policy_for_bundle
from agents.dreamerv2.config import ActorCriticConfig
from wmsim.bundle import encode_start_states, load_bundle, save_bundle
from wmsim.config import model_preset
from wmsim.dream import DreamVectorEnv
from wmsim.dream.ort import OrtPolicy
from wmsim.envs import describe_spaces, env_spec_of, make_env
from wmsim.world_model import IOSpec, WorldModel


def _bundle_with_policy(directory: Path, env_id: str) -> Path:
    env = make_env(env_id)
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    torch.manual_seed(0)
    model = WorldModel(model_preset("tiny"), io)
    starts = encode_start_states(model, torch.as_tensor(np.stack([env.reset(seed=i)[0] for i in range(4)])))
    space = env.action_space
    low = torch.as_tensor(space.low) if isinstance(space, gym.spaces.Box) else None
    high = torch.as_tensor(space.high) if isinstance(space, gym.spaces.Box) else None
    agent = ActorCritic(
        ActorCriticConfig(actor_layers=1, actor_units=16, critic_layers=1, critic_units=16), model, low, high
    )
    save_bundle(
        directory, model, env_spec_of(env), describe_spaces(env), starts, policy=policy_for_bundle(agent)
    )
    return directory


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_export_onnx_command_writes_a_policy_graph_that_matches_the_actor(
    env_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _bundle_with_policy(tmp_path / "bundle", env_id)
    assert cli_main(["export-onnx", str(path)]) == 0
    out = capsys.readouterr().out
    assert "onnx/policy.onnx" in out and f"recorded in {path / 'config.json'}" in out
    record = json.loads((path / "config.json").read_text())["onnx"]
    assert set(record["graphs"]) == {"transition", "posterior", "decoder", "policy"}
    assert "policy.safetensors" in record["source"]

    bundle = load_bundle(path)
    agent = agent_from_bundle(bundle)
    policy = OrtPolicy(path, device="cpu", seed=0)
    feat = policy.model.bank
    with torch.no_grad():
        expected = agent.act(torch.as_tensor(feat), mode=True).numpy()
    got = policy(feat, mode=True)
    space = policy.model.action_space
    if isinstance(space, gym.spaces.Discrete):
        np.testing.assert_array_equal(got, expected.argmax(-1))
    else:
        assert np.abs(got - expected).max() <= 1e-5
    # sampled actions are valid actions of the dream, and seeded
    vec = DreamVectorEnv(path, len(feat), backend="onnxruntime", seed=0)
    obs, _ = vec.reset(seed=0)
    for _ in range(3):
        actions = policy(obs, mode=False)
        assert all(space.contains(a) for a in actions)
        obs, *_ = vec.step(actions)
    np.testing.assert_array_equal(
        OrtPolicy(path, seed=1)(feat, mode=False), OrtPolicy(path, seed=1)(feat, mode=False)
    )


def test_export_onnx_command_options_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _bundle_with_policy(tmp_path / "bundle", "CartPole-v1")
    out = tmp_path / "graphs"
    assert cli_main(["export-onnx", str(path), "--out", str(out), "--no-policy", "--no-verify"]) == 0
    assert "pass onnx_dir=" in capsys.readouterr().out
    manifest = json.loads((out / "onnx.json").read_text())
    assert set(manifest["graphs"]) == {"transition", "posterior", "decoder"}
    assert "onnx" not in json.loads((path / "config.json").read_text())
    with pytest.raises(ValueError, match=r"records no policy graph .*no policy when it was exported"):
        OrtPolicy(path, onnx_dir=out)
    (path / "model.safetensors").unlink()
    assert cli_main(["export-onnx", str(path)]) == 2
    assert "model.safetensors is missing" in capsys.readouterr().err
