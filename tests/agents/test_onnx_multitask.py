"""`wmsim export-onnx` on a multi-task bundle with a policy: the DreamerV2 policy's graph goes with the
graphs of the task it learned and matches the actor on onnxruntime; a PWM policy (no policy graph yet)
is left out with a note, the world model's graphs still written."""

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
from wmsim.bundle import BundleTask, encode_start_states, load_bundle, save_bundle
from wmsim.config import model_preset
from wmsim.dream.ort import OrtPolicy
from wmsim.envs import EnvSpec, space_to_dict
from wmsim.onnx_format import OnnxGraphError
from wmsim.world_model import IOSpec, TaskIO, WorldModel

TASKS = (("cartpole-swingup", 5, 1), ("reacher-easy", 6, 2))


def _multitask_bundle(directory: Path, policy_kind: str) -> Path:
    """A tiny random two-task bundle whose policy learned ``reacher-easy``."""
    torch.manual_seed(0)
    model = WorldModel(model_preset("tiny"), IOSpec.multi_task([TaskIO(*t) for t in TASKS], embed=8))
    tasks = [
        BundleTask(
            name,
            EnvSpec("dmc", name, obs_type="state", action_repeat=2, time_limit=500),
            {
                "observation": space_to_dict(gym.spaces.Box(-np.inf, np.inf, (obs,), np.float32)),
                "action": space_to_dict(gym.spaces.Box(-1.0, 1.0, (action,), np.float32)),
            },
        )
        for name, obs, action in TASKS
    ]
    task = torch.arange(2).repeat_interleave(3)
    obs = torch.randn(6, 6)
    obs[task == 0, 5:] = 0.0
    starts = encode_start_states(model, obs, task)
    bound = model.for_task("reacher-easy")
    config = ActorCriticConfig(actor_layers=1, actor_units=16, critic_layers=1, critic_units=16)
    agent = ActorCritic(config, bound, -torch.ones(2), torch.ones(2))
    tensors, saved = policy_for_bundle(agent)
    saved = {**saved, "task": "reacher-easy"}
    if policy_kind != "dreamerv2-actor":
        saved["kind"] = policy_kind
    save_bundle(
        directory, model, tasks[0].env_spec, tasks[0].spaces, starts, policy=(tensors, saved), tasks=tasks
    )
    return directory


def test_a_multi_task_policy_is_exported_with_its_tasks_graphs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _multitask_bundle(tmp_path / "bundle", "dreamerv2-actor")
    assert cli_main(["export-onnx", str(path)]) == 0
    out = capsys.readouterr().out
    assert "task reacher-easy:" in out and "onnx/reacher-easy/policy.onnx" in out and "task=..." in out
    record = json.loads((path / "config.json").read_text())["onnx"]
    assert set(record["tasks"]["reacher-easy"]["graphs"]) == {"transition", "posterior", "decoder", "policy"}
    assert set(record["tasks"]["cartpole-swingup"]["graphs"]) == {"transition", "posterior", "decoder"}
    assert "policy.safetensors" in record["source"]

    agent = agent_from_bundle(load_bundle(path).for_task("reacher-easy"))
    policy = OrtPolicy(path, device="cpu", seed=0)  # the task its policy learned
    assert policy.model.task == "reacher-easy"
    feat = policy.model.bank
    with torch.no_grad():
        expected = agent.act(torch.as_tensor(feat), mode=True).numpy()
    got = policy(feat, mode=True)
    assert got.shape == (len(feat), 2) and np.abs(got - expected).max() <= 1e-5
    with pytest.raises(
        OnnxGraphError, match=r"no policy graph of task 'cartpole-swingup' .*learned task 'reacher-easy'"
    ):
        OrtPolicy(path, task="cartpole-swingup")


def test_a_pwm_policy_is_left_out_of_the_export_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _multitask_bundle(tmp_path / "bundle", "pwm-actor")
    assert cli_main(["export-onnx", str(path)]) == 0
    assert "policy is of kind 'pwm-actor', which has no policy graph yet" in capsys.readouterr().out
    record = json.loads((path / "config.json").read_text())["onnx"]
    assert all("policy" not in entry["graphs"] for entry in record["tasks"].values())
