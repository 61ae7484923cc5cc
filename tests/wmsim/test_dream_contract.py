"""The dream environments' contract, run on both backends from the same arguments: spaces and metadata,
seeding, the autoreset modes, the observation modes, frames, errors, the real-env wrapper, the SB3
adapter and the Gymnasium ids, and the task dreams of a multi-task bundle. Each test takes ``backend``
("torch" or "onnxruntime") and a bundle directory with exported graphs, so both backends get exactly
the same kwargs."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import wmsim
from wmsim.dream import DreamEnv, DreamVectorEnv, LatentObservation
from wmsim.dream.sb3 import DreamSB3VecEnv
from wmsim.dream.vector_env import frames_to_rgb, vector_frames
from wmsim.envs import make_env

pytestmark = [
    pytest.mark.parametrize("backend", ["torch", "onnxruntime"]),
    pytest.mark.filterwarnings(
        "ignore:.*Box observation space (minimum|maximum) value.*",
        "ignore:.*Not able to test alternative render modes.*",
        "ignore:.*we recommend using a symmetric and normalized space.*",
    ),
]


def _bank(vec: DreamVectorEnv) -> set[tuple[float, ...]]:
    return {tuple(row) for row in vec.sim.start_features()}


def _random_actions(vec: DreamVectorEnv, rng: np.random.Generator) -> np.ndarray:
    space = vec.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), vec.num_envs)
    assert isinstance(space, gym.spaces.Box)
    return rng.uniform(space.low, space.high, (vec.num_envs, *space.shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- spaces
@pytest.mark.parametrize("obs_mode", ["latent", "decoded", "dict"])
@pytest.mark.parametrize("which", ["cartpole", "pendulum"])
def test_single_env_passes_the_gymnasium_and_sb3_checkers(
    backend: str, which: str, obs_mode: str, exported: dict[str, Path]
) -> None:
    env = DreamEnv(exported[which], backend=backend, obs_mode=obs_mode, seed=0)
    check_env(env, skip_render_check=True)
    if obs_mode != "dict":
        sb3_check_env(env, warn=False)
    real = make_env(wmsim.load_bundle(exported[which]).env_spec)
    assert env.action_space == real.action_space
    if obs_mode == "decoded":
        assert env.observation_space == real.observation_space
    if obs_mode == "dict":
        assert isinstance(env.observation_space, gym.spaces.Dict)
        assert set(env.observation_space.spaces) == {"latent", "decoded"}


@pytest.mark.parametrize("autoreset", ["next_step", "same_step", "disabled"])
def test_spaces_metadata_and_time_limit_are_the_same_on_both_backends(
    backend: str, autoreset: str, exported: dict[str, Path]
) -> None:
    vec = DreamVectorEnv(exported["cartpole"], 5, backend=backend, obs_mode="dict", autoreset=autoreset)
    reference = DreamVectorEnv(exported["cartpole"], 5, obs_mode="dict", autoreset=autoreset)  # torch
    modes = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}
    assert vec.metadata == reference.metadata
    assert vec.metadata["autoreset_mode"] == modes.get(autoreset, AutoresetMode.DISABLED)
    assert vec.observation_space == reference.observation_space
    assert vec.action_space == reference.action_space
    assert vec.time_limit == reference.time_limit == 500  # CartPole-v1's
    assert vec.backend == backend and vec.sim.name == backend


def test_pixels_is_the_former_name_of_decoded(backend: str, exported: dict[str, Path]) -> None:
    decoded = DreamVectorEnv(exported["cartpole"], 2, backend=backend, obs_mode="decoded", seed=1)
    pixels = DreamVectorEnv(exported["cartpole"], 2, backend=backend, obs_mode="pixels", seed=1)
    assert pixels.obs_mode == "decoded" and pixels.observation_space == decoded.observation_space
    obs, _ = pixels.reset(seed=0)
    np.testing.assert_array_equal(obs, decoded.reset(seed=0)[0])
    assert obs.shape == (2, 4) and obs.dtype == np.float32  # CartPole states, not pixels


def test_image_model_decodes_frames_in_the_real_format(backend: str, exported: dict[str, Path]) -> None:
    env = DreamEnv(exported["pong"], backend=backend, obs_mode="decoded", render_mode="rgb_array", seed=0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 1)
    frame = env.render()
    assert frame is not None and frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, frames_to_rgb(obs))  # the frame is the decoded observation
    check_env(env)


def test_vector_models_render_their_decoded_state_as_bars(backend: str, exported: dict[str, Path]) -> None:
    vec = DreamVectorEnv(
        exported["cartpole"], 3, backend=backend, obs_mode="decoded", render_mode="rgb_array"
    )
    obs, _ = vec.reset(seed=0)
    frames = vec.render()
    assert frames is not None and len(frames) == 3
    np.testing.assert_array_equal(np.stack(frames), vector_frames(obs))
    assert frames[0].dtype == np.uint8 and frames[0].shape == (64, 64, 3)
    assert (frames[0] == (40, 90, 200)).all(-1).any() and (frames[0][32] == 0).all()  # bars, zero line
    assert DreamVectorEnv(exported["cartpole"], 3, backend=backend).render() is None  # no render_mode


# ---------------------------------------------------------------------------------------------- seeding
def _rollout(vec: DreamVectorEnv, seed: int | list[int | None], steps: int = 12) -> list[np.ndarray]:
    obs, _ = vec.reset(seed=seed)
    out = [obs]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = vec.step(_random_actions(vec, rng))
        out += [obs, reward, terminated, truncated]
    return out


def test_reset_seed_makes_a_dream_reproducible(backend: str, exported: dict[str, Path]) -> None:
    def make(seed: int | None = None) -> DreamVectorEnv:
        return DreamVectorEnv(
            exported["cartpole"], 8, backend=backend, termination="sample", time_limit=5, seed=seed
        )

    first = _rollout(make(), 3)
    for again in (_rollout(make(), 3), _rollout(make(99), 3)):  # reset(seed) decides, not the constructor's
        for a, b in zip(first, again, strict=True):
            np.testing.assert_array_equal(a, b)
    other = _rollout(make(), 4)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    np.testing.assert_array_equal(make(5).reset()[0], make(5).reset()[0])  # seed= seeds an unseeded reset
    vec = make()
    vec.reset(seed=7)
    assert vec.np_random_seed == 7


def test_a_seed_list_seeds_each_sub_env(backend: str, exported: dict[str, Path]) -> None:
    vec = DreamVectorEnv(exported["cartpole"], 4, backend=backend)
    seeds = [11, 22, 33, 44]
    first = _rollout(vec, seeds)
    for a, b in zip(first, _rollout(vec, seeds), strict=True):  # reproducible
        np.testing.assert_array_equal(a, b)
    # a sub-env's first state depends on its own seed alone; every seed is used
    changed, _ = vec.reset(seed=[11, 22, 33, 45])
    np.testing.assert_array_equal(changed[:3], first[0][:3])
    starts = [vec.reset(seed=[11, 22, 33, s])[0][3] for s in range(40)]
    assert len({tuple(row) for row in starts}) > 1
    assert vec.np_random_seed == (11, 22, 33, 39)
    # a sub-env seeded alike starts alike, whatever its index
    same, _ = vec.reset(seed=[5, 5, None, 5])
    np.testing.assert_array_equal(same[0], same[1])
    np.testing.assert_array_equal(same[0], same[3])
    with pytest.raises(ValueError, match=r"a seed list needs 4 entries \(one per sub-env\)"):
        vec.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="seed=-1: pass a non-negative int"):
        vec.reset(seed=-1)


# ---------------------------------------------------------------------------------------------- autoreset
@pytest.mark.parametrize("seed", [0, 1])
def test_next_step_autoreset_keeps_gymnasium_contract(
    backend: str, seed: int, exported: dict[str, Path]
) -> None:
    num_envs, limit = 11, 2 + seed
    vec = DreamVectorEnv(
        exported["cartpole"], num_envs, backend=backend, obs_mode="dict", time_limit=limit, seed=seed
    )
    bank = _bank(vec)
    rng = np.random.default_rng(seed)
    vec.reset(seed=seed)
    ended = np.zeros(num_envs, bool)
    elapsed = np.zeros(num_envs, int)
    for _ in range(12):
        obs, reward, terminated, truncated, info = vec.step(_random_actions(vec, rng))
        assert info == {} and vec.observation_space.contains(obs)
        assert reward.dtype == np.float64 and terminated.dtype == bool and truncated.dtype == bool
        # the step after an episode ends is a reset step: reward 0, no flags, a start state
        assert (reward[ended] == 0).all() and not terminated[ended].any() and not truncated[ended].any()
        assert all(tuple(obs["latent"][i]) in bank for i in np.flatnonzero(ended))
        elapsed = np.where(ended, 0, elapsed + 1)
        assert (truncated == ((elapsed >= limit) & ~terminated)).all()
        assert not (terminated & truncated).any()
        ended = terminated | truncated
    assert ended.any() or elapsed.max() < limit


@pytest.mark.parametrize(
    "spelling", ["same_step", AutoresetMode.SAME_STEP, AutoresetMode.SAME_STEP.value], ids=str
)
def test_same_step_autoreset_reports_final_observations(
    backend: str, spelling: object, exported: dict[str, Path]
) -> None:
    key = "autoreset" if spelling == "same_step" else "autoreset_mode"
    vec = DreamVectorEnv(exported["pendulum"], 16, backend=backend, time_limit=2, seed=0, **{key: spelling})
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    bank = _bank(vec)
    vec.reset(seed=0)
    elapsed = np.zeros(16, int)
    for _ in range(4):
        obs, _, terminated, truncated, info = vec.step(np.zeros((16, 1), np.float32))
        elapsed += 1
        done = terminated | truncated
        assert done[elapsed >= 2].all()
        np.testing.assert_array_equal(info.get("_final_obs", np.zeros(16, bool)), done)
        for i in np.flatnonzero(done):
            assert vec.single_observation_space.contains(info["final_obs"][i])
            assert tuple(obs[i]) in bank  # already the next episode's first observation
        elapsed[done] = 0


def test_disabled_autoreset_and_reset_masks(backend: str, exported: dict[str, Path]) -> None:
    vec = DreamVectorEnv(exported["cartpole"], 4, backend=backend, autoreset_mode=AutoresetMode.DISABLED)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    vec.reset(seed=0)
    obs, *_ = vec.step(np.array([0, 1, 0, 1]))
    again, _ = vec.reset(options={"reset_mask": np.array([True, False, False, True])})
    np.testing.assert_array_equal(again[1:3], obs[1:3])
    assert {tuple(again[0]), tuple(again[3])} <= _bank(vec)
    with pytest.raises(ValueError, match=r"disagree: pass one of them"):
        DreamVectorEnv(
            exported["cartpole"], 2, backend=backend, autoreset="next_step", autoreset_mode="SameStep"
        )
    with pytest.raises(ValueError, match=r"autoreset mode 'sometimes': choose one of"):
        DreamVectorEnv(exported["cartpole"], 2, backend=backend, autoreset="sometimes")


# ---------------------------------------------------------------------------------------------- real frames
def test_dreams_start_from_real_observations_as_the_latent_wrapper_sees_them(
    backend: str, exported: dict[str, Path]
) -> None:
    spec = wmsim.load_bundle(exported["cartpole"]).env_spec
    frame, _ = make_env(spec).reset(seed=5)
    env = DreamEnv(exported["cartpole"], backend=backend, obs_mode="dict", seed=0)
    obs, _ = env.reset(seed=0, options={"observation": frame})
    wrapped = LatentObservation(make_env(spec), exported["cartpole"], backend=backend, seed=0)
    latent, _ = wrapped.reset(seed=5)
    deter = wmsim.load_bundle(exported["cartpole"]).config.rssm.deter
    np.testing.assert_allclose(obs["latent"][:deter], latent[:deter], atol=1e-5)  # same posterior deter
    for _ in range(5):
        latent, *_ = wrapped.step(wrapped.action_space.sample())
        assert wrapped.observation_space.contains(latent)
    both = LatentObservation(make_env(spec), exported["cartpole"], backend=backend, obs_mode="dict")
    obs, _ = both.reset(seed=5)
    assert both.observation_space == env.observation_space and both.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["decoded"], frame)


def test_latent_wrapper_is_seeded_and_defaults_alike_on_both_backends(
    backend: str, exported: dict[str, Path]
) -> None:
    spec = wmsim.load_bundle(exported["pendulum"]).env_spec

    def run(seed: int) -> list[np.ndarray]:
        env = LatentObservation(make_env(spec), exported["pendulum"], backend=backend)
        out = [env.reset(seed=seed)[0]]
        out += [env.step(np.array([0.5], np.float32))[0] for _ in range(4)]
        return out

    np.testing.assert_array_equal(np.stack(run(1)), np.stack(run(1)))
    env = LatentObservation(make_env(spec), exported["pendulum"], backend=backend)
    assert env._saved_kwargs["device"] == "auto" and env._saved_kwargs["backend"] == backend


# ---------------------------------------------------------------------------------------------- errors
BAD_ACTIONS = [
    ("cartpole", np.zeros((3, 1), np.int64), r"shape \(3, 1\).*expects \(3,\) integer"),
    ("cartpole", np.zeros(3, np.float32), "dtype float32; discrete actions must be integers"),
    ("cartpole", np.array([0, 1, 2]), r"out of range.*\[0, 2\)"),
    ("cartpole", np.array([-1, 0, 1]), "out of range"),
    ("pendulum", np.zeros(3, np.float32), r"shape \(3,\); this dream expects \(3, 1\)"),
    ("pendulum", np.full((3, 1), np.nan, np.float32), "NaN or inf"),
    ("pendulum", np.full((3, 1), 5.0, np.float32), "outside the action space"),
    ("pendulum", np.zeros((3, 1), np.int64), "must be floats"),
]


@pytest.mark.parametrize(("which", "action", "message"), BAD_ACTIONS)
def test_bad_actions_get_clear_errors(
    backend: str, which: str, action: np.ndarray, message: str, exported: dict[str, Path]
) -> None:
    vec = DreamVectorEnv(exported[which], 3, backend=backend, seed=0)
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step"):
        vec.step(action)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        vec.step(action)
    single = DreamEnv(exported[which], backend=backend, seed=0)
    with pytest.raises(RuntimeError, match="call reset"):
        single.step(single.action_space.sample())


def test_bad_construction_gets_clear_errors(backend: str, exported: dict[str, Path]) -> None:
    path = exported["cartpole"]
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"num_envs": 0}, ValueError, "num_envs=0 must be a positive integer"),
        ({"obs_mode": "rgb"}, ValueError, "obs_mode='rgb': choose one of"),
        ({"termination": "never"}, ValueError, "termination='never': choose one of"),
        ({"time_limit": 0}, ValueError, r"time_limit=0 must be an integer >= 1 \(steps before truncation\)"),
        ({"render_mode": "human"}, ValueError, "render_mode='human': dreams render 'rgb_array'"),
        ({"model": "NoSuchModel"}, ValueError, "unknown model 'NoSuchModel'"),
        ({"model": None}, ValueError, "no model given"),
        ({"backend": "jax"}, ValueError, r"backend='jax': choose one of \('torch', 'onnxruntime'\)"),
    ]
    for kwargs, error, message in cases:
        arguments: dict[str, object] = {"model": path, "backend": backend, **kwargs}
        with pytest.raises(error, match=message):
            DreamVectorEnv(**arguments)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not match the model's observations"):
        LatentObservation(make_env("Pendulum-v1"), path, backend=backend)
    for key in ("autoreset", "autoreset_mode"):  # a single env does not reset itself, on either backend
        with pytest.raises(ValueError, match=re.escape(f"['{key}']: a single DreamEnv plays one episode")):
            DreamEnv(path, backend=backend, **{key: "same_step"})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=re.escape(f"['{key}']: SB3 vector envs reset")):
            DreamSB3VecEnv(path, 2, backend=backend, **{key: "next_step"})  # type: ignore[arg-type]


def test_backend_specific_options_are_refused_by_name(backend: str, exported: dict[str, Path]) -> None:
    path = exported["cartpole"]
    if backend == "torch":
        with pytest.raises(TypeError, match=r"\['providers'\]: option\(s\) of backend='onnxruntime' only"):
            DreamVectorEnv(path, backend=backend, providers=["CPUExecutionProvider"])
        vec = DreamVectorEnv(path, 2, backend=backend, dtype="bfloat16", obs_mode="dict")
        vec.reset(seed=0, options={"observation": np.zeros((2, 4), np.float32)})  # bf16 posterior
        obs, *_ = vec.step(np.array([0, 1]))
        assert obs["latent"].dtype == np.float32
    else:
        with pytest.raises(ValueError, match=r"dtype='bfloat16': the onnxruntime backend runs .* float32"):
            DreamVectorEnv(path, backend=backend, dtype="bfloat16")
        vec = DreamVectorEnv(path, backend=backend, providers=["CPUExecutionProvider"])
        assert vec.sim.providers == ["CPUExecutionProvider"]  # type: ignore[attr-defined]
        with pytest.raises(RuntimeError, match=r"step_tensor\(\) is the torch backend's tensor API"):
            vec.step_tensor(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- gym ids
def test_gym_make_and_make_vec_select_the_backend(backend: str, exported: dict[str, Path]) -> None:
    env_id = wmsim.register_dream(f"Contract{backend.title()}", str(exported["cartpole"]), backend=backend)
    single = gym.make(env_id, obs_mode="decoded")
    assert isinstance(single.unwrapped, DreamEnv) and single.unwrapped.backend == backend
    single.reset(seed=0)
    single.step(1)
    vec = gym.make_vec(env_id, num_envs=8, seed=3, autoreset_mode=AutoresetMode.SAME_STEP)
    assert isinstance(vec, DreamVectorEnv) and vec.backend == backend and vec.num_envs == 8
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    vec.reset(seed=0)
    vec.step(vec.action_space.sample())
    with pytest.raises(ValueError, match="a single DreamEnv plays one episode"):
        gym.make(env_id, autoreset="same_step")  # the same error on both backends
    other = "onnxruntime" if backend == "torch" else "torch"
    assert gym.make_vec(env_id, num_envs=2, backend=other).backend == other


# ---------------------------------------------------------------------------------------------- SB3
def test_sb3_vec_env_contract(backend: str, exported: dict[str, Path]) -> None:
    venv = DreamSB3VecEnv(exported["pendulum"], 8, backend=backend, time_limit=3, seed=0)
    bank = _bank(venv.dream)
    obs = venv.reset()
    assert obs.shape == (8, venv.dream.sim.dims.feat_size)
    elapsed = np.zeros(8, int)
    for _ in range(7):
        venv.step_async(np.zeros((8, 1), np.float32))
        obs, rewards, dones, infos = venv.step_wait()
        elapsed += 1
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 8
        assert dones[elapsed >= 3].all()  # the time limit always ends the episode
        for i, (info, done) in enumerate(zip(infos, dones, strict=True)):
            assert done == ("terminal_observation" in info)
            if done:
                assert venv.observation_space.contains(info["terminal_observation"])
                assert tuple(obs[i]) in bank  # SB3: the returned obs already starts the next episode
                if info["TimeLimit.truncated"]:
                    assert elapsed[i] == 3
        elapsed[dones] = 0


def test_sb3_attribute_and_method_calls_honour_indices(backend: str, exported: dict[str, Path]) -> None:
    venv = DreamSB3VecEnv(exported["cartpole"], 4, backend=backend, render_mode="rgb_array", seed=0)
    venv.reset()
    assert venv.render_mode == "rgb_array"
    assert venv.get_attr("time_limit", indices=[1, 3]) == [500, 500]
    venv.set_attr("difficulty", 3, indices=[1, 2])
    assert venv.get_attr("difficulty", indices=[1, 2]) == [3, 3]
    with pytest.raises(AttributeError):
        venv.get_attr("difficulty", indices=[0])
    frames = venv.env_method("render", indices=[0, 2])
    all_frames = venv.dream.render()
    assert all_frames is not None and len(frames) == 2
    np.testing.assert_array_equal(frames[1], all_frames[2])
    assert venv.env_method("get_wrapper_attr", "difficulty", indices=2) == [3]
    with pytest.raises(
        ValueError, match=r"set_attr\('render_mode'\) on indices \[0\]: 'render_mode' is shared"
    ):
        venv.set_attr("render_mode", None, indices=[0])
    venv.set_attr("render_mode", None)
    assert venv.dream.render_mode is None and venv.env_method("render", indices=[1]) == [None]
    with pytest.raises(ValueError, match=r"env_method\('close'\).*venv\.dream\.close"):
        venv.env_method("close", indices=[0])
    assert venv.env_is_wrapped(gym.Wrapper, indices=[0, 1]) == [False, False]


def test_sb3_dict_observations_train_a_multi_input_policy(backend: str, exported: dict[str, Path]) -> None:
    from stable_baselines3 import PPO

    venv = DreamSB3VecEnv(exported["pong"], 2, backend=backend, obs_mode="dict", time_limit=4, seed=0)
    assert isinstance(venv.observation_space, gym.spaces.Dict)
    agent = PPO("MultiInputPolicy", venv, n_steps=8, batch_size=8, n_epochs=1, seed=0, device="cpu")
    agent.learn(total_timesteps=16)
    obs = venv.reset()
    assert obs["decoded"].shape == (2, 64, 64, 1) and obs["decoded"].dtype == np.uint8
    action, _ = agent.predict(obs, deterministic=True)
    assert action.shape == (2,)


# ---------------------------------------------------------------------------------------------- multi-task
#: The tasks of the tiny multi-task bundle (conftest's ``multitask_exported``): (task=, obs, action);
#: a task is named by its name or its env id.
TASKS = [("cartpole-swingup", 5, 1), ("dmc/reacher-easy", 6, 2)]


@pytest.mark.parametrize(("task", "obs", "action"), TASKS)
def test_a_task_dream_speaks_the_tasks_real_spaces(
    backend: str, task: str, obs: int, action: int, multitask_exported: Path
) -> None:
    path = str(multitask_exported)
    for obs_mode in ("latent", "decoded"):
        env = gym.make("wmsim/Dream", model=path, task=task, backend=backend, obs_mode=obs_mode, seed=0)
        assert isinstance(env.unwrapped, DreamEnv) and env.unwrapped.backend == backend
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=False)
        assert env.action_space == gym.spaces.Box(-1.0, 1.0, (action,), np.float32)
        if obs_mode == "decoded":
            assert env.observation_space.shape == (obs,)
    vec = DreamVectorEnv(path, 3, backend=backend, task=task, obs_mode="dict")
    reference = DreamVectorEnv(path, 3, task=task, obs_mode="dict")  # torch
    assert vec.observation_space == reference.observation_space
    assert vec.action_space == reference.action_space
    assert vec.time_limit == reference.time_limit == 500  # the task env's
    assert _bank(vec) == _bank(reference) and len(_bank(vec)) == 3  # the task's start states


@pytest.mark.parametrize(("task", "obs", "action"), TASKS)
def test_task_dreams_batch_autoreset_and_feed_sb3(
    backend: str, task: str, obs: int, action: int, multitask_exported: Path
) -> None:
    path = str(multitask_exported)
    vec = gym.make_vec(
        "wmsim/Dream",
        num_envs=5,
        model=path,
        task=task,
        backend=backend,
        obs_mode="decoded",
        time_limit=2,
        autoreset_mode=AutoresetMode.SAME_STEP,
        seed=0,
    )
    assert isinstance(vec, DreamVectorEnv) and vec.backend == backend
    assert vec.single_observation_space.shape == (obs,) and vec.single_action_space.shape == (action,)
    decoded, _ = vec.reset(seed=0)
    assert decoded.shape == (5, obs)
    rng = np.random.default_rng(0)
    elapsed = np.zeros(5, int)
    for _ in range(4):
        decoded, reward, terminated, truncated, info = vec.step(_random_actions(vec, rng))
        assert decoded.shape == (5, obs) and reward.shape == (5,)
        elapsed += 1
        done = terminated | truncated
        assert done[elapsed >= 2].all()  # the time limit always ends the episode
        for i in np.flatnonzero(done):
            assert vec.single_observation_space.contains(info["final_obs"][i])
        elapsed[done] = 0
    with pytest.raises(ValueError, match=r"shape \(5, 3\); this dream expects \(5, " + str(action)):
        vec.step(np.zeros((5, 3), np.float32))  # the padded size is not the task's
    venv = DreamSB3VecEnv(path, 4, backend=backend, task=task, time_limit=2, seed=0)
    assert venv.action_space.shape == (action,)
    venv.reset()
    elapsed = np.zeros(4, int)
    for _ in range(4):
        venv.step_async(np.zeros((4, action), np.float32))
        latent, rewards, dones, infos = venv.step_wait()
        assert latent.shape == (4, venv.dream.sim.dims.feat_size) and rewards.shape == (4,)
        elapsed += 1
        assert dones[elapsed >= 2].all()
        assert [bool(d) for d in dones] == ["terminal_observation" in info for info in infos]
        elapsed[dones] = 0


def test_the_real_env_of_a_task_through_its_posterior(backend: str, multitask_exported: Path) -> None:
    from wmsim.envs import EnvSpec

    real = make_env(EnvSpec.from_id("dmc/reacher-easy", obs_type="state"))
    env = LatentObservation(real, multitask_exported, backend=backend, task="reacher-easy", seed=0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for _ in range(3):
        obs, *_ = env.step(real.action_space.sample())
        assert env.observation_space.contains(obs)
    env.close()


def test_task_errors_are_the_same_on_both_backends(
    backend: str, multitask_exported: Path, exported: dict[str, Path]
) -> None:
    cases = [
        (multitask_exported, None, r"multi-task: pass task= one of cartpole-swingup, reacher-easy \(gym"),
        (multitask_exported, "walker-walk", "unknown task 'walker-walk': bundle .* holds the tasks"),
        (exported["cartpole"], "reacher-easy", r"single-task \(gym/CartPole-v1\); leave task out"),
    ]
    for path, task, message in cases:
        with pytest.raises(ValueError, match=message):
            gym.make("wmsim/Dream", model=str(path), task=task, backend=backend)
        with pytest.raises(ValueError, match=message):
            gym.make_vec("wmsim/Dream", num_envs=2, model=str(path), task=task, backend=backend)
