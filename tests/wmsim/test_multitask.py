"""Multi-task world models: one tiny model over two tasks of different sizes trains, saves and loads;
dreams of each task speak its real spaces; bad task names and inconsistent bundles are refused."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import wmsim
from wmsim.bundle import Bundle, BundleError, BundleTask, encode_start_states, load_bundle, save_bundle
from wmsim.config import model_preset
from wmsim.envs import EnvSpec, space_to_dict
from wmsim.world_model import IOSpec, TaskIO, WorldModel, WorldModelTrainer

#: (name, observation size, action size): a cartpole-like and a reacher-like task
TASKS = (("cartpole-swingup", 5, 1), ("reacher-easy", 6, 2))


def task_entry(name: str, obs: int, action: int) -> BundleTask:
    spec = EnvSpec("dmc", name, obs_type="state", action_repeat=2, time_limit=500)
    spaces = {
        "observation": space_to_dict(gym.spaces.Box(-np.inf, np.inf, (obs,), np.float32)),
        "action": space_to_dict(gym.spaces.Box(-1.0, 1.0, (action,), np.float32)),
    }
    return BundleTask(name, spec, spaces)


def tiny_model() -> WorldModel:
    torch.manual_seed(0)
    io = IOSpec.multi_task([TaskIO(*t) for t in TASKS], embed=8)
    return WorldModel(model_preset("tiny"), io)


def multitask_batch(model: WorldModel, rows: int = 4, length: int = 6) -> dict[str, torch.Tensor]:
    """Random padded sequences, half of the rows of each task."""
    io = model.full_io
    task = torch.arange(rows) % 2
    obs = torch.randn(rows, length, io.obs_shape[0])
    action = torch.rand(rows, length, io.action_size) * 2 - 1
    for row, index in enumerate(task.tolist()):
        _, obs_size, action_size = TASKS[index]
        obs[row, :, obs_size:] = 0.0
        action[row, :, action_size:] = 0.0
    first = torch.zeros(rows, length, dtype=torch.bool)
    first[:, 0] = True
    return {
        "obs": obs,
        "action": action,
        "reward": torch.rand(rows, length),
        "is_first": first,
        "is_terminal": torch.zeros(rows, length, dtype=torch.bool),
        "task": task[:, None].expand(rows, length).clone(),
    }


def save_multitask(directory: Path, model: WorldModel, starts_per_task: int = 3) -> Bundle:
    obs = torch.randn(2 * starts_per_task, model.full_io.obs_shape[0])
    task = torch.arange(2).repeat_interleave(starts_per_task)
    obs[task == 0, 5:] = 0.0
    starts = encode_start_states(model, obs, task)
    tasks = [task_entry(*t) for t in TASKS]
    save_bundle(directory, model, tasks[0].env_spec, tasks[0].spaces, starts, tasks=tasks)
    return load_bundle(directory)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("multitask") / "bundle"
    save_multitask(directory, tiny_model())
    return directory


def test_io_spec_round_trip_and_single_task_unchanged() -> None:
    model = tiny_model()
    io = model.full_io
    assert io.obs_shape == (6,) and io.action_size == 2 and not io.discrete
    assert IOSpec.from_dict(json.loads(json.dumps(io.to_dict()))) == io
    single = IOSpec((3,), False, 1, False)
    assert set(single.to_dict()) == {"obs_shape", "image", "action_size", "discrete"}
    assert "task_embed.weight" not in WorldModel(model_preset("tiny"), single).state_dict()


def test_multitask_model_trains_saves_and_loads(tmp_path: Path) -> None:
    model = tiny_model()
    trainer = WorldModelTrainer(model, precision="fp32")
    batch = multitask_batch(model)
    losses = [float(trainer.train_step(batch)[1]["model_loss"]) for _ in range(15)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    bundle = save_multitask(tmp_path / "bundle", model)
    assert bundle.task_names == ["cartpole-swingup", "reacher-easy"]
    assert bundle.model.full_io == model.full_io
    for name, value in model.state_dict().items():
        torch.testing.assert_close(bundle.model.state_dict()[name], value)
    assert bundle.start_states.task is not None and bundle.start_states.task.tolist() == [0, 0, 0, 1, 1, 1]
    # one task's bundle: its real sizes and start states
    reacher = bundle.for_task("dmc/reacher-easy")
    assert reacher.task == "reacher-easy" and reacher.model.io.obs_shape == (6,)
    cartpole = bundle.for_task("cartpole-swingup")
    assert cartpole.start_states.obs.shape == (3, 5) and cartpole.model.io.action_size == 1
    assert cartpole.env_spec.name == "cartpole-swingup"


def test_bound_model_pads_inside() -> None:
    """The model bound to a task gives what the unbound model gives on padded inputs and task indices."""
    model = tiny_model().eval()
    bound = model.for_task("cartpole-swingup")
    state = model.rssm.initial(3)
    action = torch.rand(3, 1) * 2 - 1
    noise = torch.rand(3, 4, 4)
    nxt, reward, cont = bound.step(state, action, noise=noise)
    padded = torch.cat([action, torch.zeros(3, 1)], -1)
    nxt2, reward2, cont2 = model.step(state, padded, noise=noise, task=torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(nxt.deter, nxt2.deter)
    torch.testing.assert_close(reward, reward2)
    torch.testing.assert_close(cont, cont2)
    assert bound.decode(nxt.feat).shape == (3, 5)
    # another task's embedding changes the transition
    other, _, _ = model.step(state, padded, noise=noise, task=torch.ones(3, dtype=torch.long))
    assert not torch.allclose(other.deter, nxt.deter)
    with pytest.raises(ValueError, match=r"multi-task .*cartpole-swingup, reacher-easy"):
        model.step(state, padded)


@pytest.mark.parametrize(("task", "obs", "action"), [("cartpole-swingup", 5, 1), ("reacher-easy", 6, 2)])
def test_dreams_per_task_expose_real_spaces(bundle_dir: Path, task: str, obs: int, action: int) -> None:
    env = gym.make("wmsim/Dream", model=str(bundle_dir), task=task, obs_mode="decoded")
    assert env.observation_space.shape == (obs,) and env.action_space.shape == (action,)
    first, _ = env.reset(seed=0)
    assert first.shape == (obs,)
    step = env.step(env.action_space.sample())
    assert step[0].shape == (obs,) and np.isfinite(step[1])
    vec = gym.make_vec("wmsim/Dream", num_envs=3, model=str(bundle_dir), task=task)
    assert vec.single_action_space.shape == (action,)
    vec.reset(seed=1)
    latent, reward, *_ = vec.step(vec.action_space.sample())
    assert latent.shape == (3, vec.single_observation_space.shape[0]) and reward.shape == (3,)


def test_bad_task_names_are_refused(bundle_dir: Path, pendulum_bundle: Bundle) -> None:
    with pytest.raises(ValueError, match=r"unknown task 'walker-walk'.*cartpole-swingup, reacher-easy"):
        gym.make("wmsim/Dream", model=str(bundle_dir), task="walker-walk")
    with pytest.raises(ValueError, match="multi-task: pass task= one of cartpole-swingup, reacher-easy"):
        gym.make_vec("wmsim/Dream", num_envs=2, model=str(bundle_dir))
    with pytest.raises(ValueError, match="single-task"):
        gym.make("wmsim/Dream", model=pendulum_bundle, task="walker-walk")
    with pytest.raises(ValueError, match=r"has no ONNX graphs.*wmsim export-onnx"):  # not exported here
        gym.make("wmsim/Dream", model=str(bundle_dir), task="reacher-easy", backend="onnxruntime")


def test_inconsistent_task_lists_are_refused(bundle_dir: Path, tmp_path: Path) -> None:
    import shutil

    def edited(name: str, change: object) -> Path:
        copy = Path(shutil.copytree(bundle_dir, tmp_path / name))
        config = json.loads((copy / "config.json").read_text())
        change(config)  # type: ignore[operator]
        (copy / "config.json").write_text(json.dumps(config))
        return copy

    def rename(config: dict) -> None:
        config["tasks"][1]["name"] = "walker-walk"

    with pytest.raises(BundleError, match=r"task list .*walker-walk.* does not match"):
        load_bundle(edited("renamed", rename))

    def drop(config: dict) -> None:  # the padded sizes stay those of reacher-easy
        config["tasks"].pop(0)
        config["io"]["tasks"]["tasks"].pop(0)

    with pytest.raises(BundleError, match=r"task embeddings for 2 tasks but config.json lists 1"):
        load_bundle(edited("dropped", drop))

    def single(config: dict) -> None:
        del config["tasks"]
        del config["io"]["tasks"]

    with pytest.raises(BundleError, match=r"task embeddings for 2 tasks but config.json lists 0"):
        load_bundle(edited("untasked", single))

    def sizes(config: dict) -> None:
        config["io"]["action_size"] = 3

    with pytest.raises(BundleError, match="does not fit its tasks"):
        load_bundle(edited("resized", sizes))


def test_saving_needs_a_consistent_task_list(tmp_path: Path) -> None:
    model = tiny_model()
    starts = encode_start_states(model, torch.zeros(2, 6), torch.tensor([0, 1]))
    tasks = [task_entry(*t) for t in TASKS]
    with pytest.raises(ValueError, match="does not match the world model's tasks"):
        save_bundle(tmp_path / "a", model, tasks[0].env_spec, tasks[0].spaces, starts, tasks=tasks[::-1])
    only_first = encode_start_states(model, torch.zeros(2, 6), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"\['reacher-easy'\] have no start states"):
        save_bundle(tmp_path / "b", model, tasks[0].env_spec, tasks[0].spaces, only_first, tasks=tasks)
    with pytest.raises(ValueError, match="bound to one task"):
        save_bundle(
            tmp_path / "c", model.for_task(0), tasks[0].env_spec, tasks[0].spaces, starts, tasks=tasks
        )
    assert wmsim.Bundle is Bundle


def test_real_env_through_a_task_posterior(bundle_dir: Path) -> None:
    """A task's real env seen through the model's posterior (the transfer wrapper takes ``task=``; the
    ONNX export and the onnxruntime backend of tasks are tested in test_onnx.py)."""
    from wmsim.dream import LatentObservation
    from wmsim.envs import make_env

    real = make_env(EnvSpec.from_id("dmc/reacher-easy", obs_type="state"))
    env = LatentObservation(real, str(bundle_dir), task="reacher-easy", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    obs, *_ = env.step(real.action_space.sample())
    assert np.isfinite(obs).all()
    env.close()
