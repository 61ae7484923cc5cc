"""Real envs for world models: spaces, Dreamer's step flags, seeding, EnvSpec JSON, and clear errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from wmsim.envs import (
    EnvSpec,
    describe_spaces,
    env_spec_of,
    make_env,
    space_from_dict,
    space_to_dict,
)

# check_env runs on the wrapped env on purpose, and CartPole-like bounds are infinite.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is different from the unwrapped version:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*value is -?infinity:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*symmetric and normalized:UserWarning"),
]


def _run_episode(env: gym.Env[Any, Any], seed: int, max_steps: int = 10_000) -> list[tuple[Any, ...]]:
    """Random actions until the episode ends: ``[(obs, reward, terminated, truncated, info), ...]``, the
    reset first as ``(obs, 0.0, False, False, info)``."""
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    steps: list[tuple[Any, ...]] = [(obs, 0.0, False, False, info)]
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return steps


def _assert_flags(steps: list[tuple[Any, ...]], terminal: bool) -> None:
    infos = [s[4] for s in steps]
    assert [i["is_first"] for i in infos] == [True] + [False] * (len(infos) - 1)
    assert [i["is_last"] for i in infos] == [False] * (len(infos) - 1) + [True]
    assert [i["is_terminal"] for i in infos] == [False] * (len(infos) - 1) + [terminal]
    assert steps[-1][2] is terminal and steps[-1][3] is (not terminal)


# -- gym -------------------------------------------------------------------------------------------


def test_cartpole_spaces_flags_and_env_checker() -> None:
    env = make_env("CartPole-v1", seed=0)
    assert env.observation_space == gym.make("CartPole-v1").observation_space
    assert env.observation_space.dtype == np.float32 and env.observation_space.shape == (4,)
    assert env.action_space == gym.spaces.Discrete(2)
    steps = _run_episode(env, seed=0)
    assert 1 < len(steps) < 500 and all(s[0].dtype == np.float32 and s[0].shape == (4,) for s in steps)
    _assert_flags(steps, terminal=True)
    check_env(env, skip_render_check=True)
    env.close()


def test_pendulum_time_limit_truncates_without_terminal() -> None:
    env = make_env("Pendulum-v1", time_limit=5)
    assert env.observation_space.dtype == np.float32 and env.observation_space.shape == (3,)
    assert isinstance(env.action_space, gym.spaces.Box) and env.action_space.dtype == np.float32
    steps = _run_episode(env, seed=1)
    assert len(steps) == 6
    _assert_flags(steps, terminal=False)
    check_env(env, skip_render_check=True)
    assert env_spec_of(env) == EnvSpec.from_id("Pendulum-v1", time_limit=5)


def test_gym_ids_defaults_and_action_repeat() -> None:
    spec = EnvSpec.from_id("CartPole-v1")
    assert spec == EnvSpec.from_id("gym/CartPole-v1") and spec.id == "gym/CartPole-v1"
    assert (spec.suite, spec.obs_type, spec.action_repeat, spec.time_limit) == ("gym", "state", 1, 500)
    assert EnvSpec.from_id("Pendulum-v1").time_limit == 200
    repeated = EnvSpec.from_id("CartPole-v1", action_repeat=2)
    assert repeated.time_limit == 250
    env = make_env(repeated, seed=0)
    env.reset()
    _, reward, *_ = env.step(0)
    assert reward == 2.0
    env.close()


class _ToyEnv(gym.Env[Any, Any]):
    """A tiny env with given spaces; observations are seeded samples, episodes last 3 steps."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, spaces: tuple[gym.Space[Any], gym.Space[Any]], render_mode: str | None = None) -> None:
        self.observation_space, self.action_space = spaces
        self.render_mode = render_mode
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self.observation_space.sample(), 1.0, self._t >= 3, False, {}

    def render(self) -> Any:
        return np.full((30, 40, 3), 7 * self._t, np.uint8)


def _make_toy(**kwargs: Any) -> gym.Env[Any, Any]:
    return _ToyEnv(**kwargs)


_TOYS: dict[str, tuple[gym.Space[Any], gym.Space[Any]]] = {
    "WmsimToyImage-v0": (gym.spaces.Box(0, 255, (40, 50, 3), np.uint8), gym.spaces.Discrete(3)),
    "WmsimToyVector64-v0": (gym.spaces.Box(-1, 1, (6,), np.float64), gym.spaces.Box(-1, 1, (2,), np.float64)),
    "WmsimToyDict-v0": (
        gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,), np.float32)}),
        gym.spaces.Discrete(2),
    ),
    "WmsimToy2D-v0": (gym.spaces.Box(-1, 1, (4, 5), np.float32), gym.spaces.Discrete(2)),
    "WmsimToyMultiDiscrete-v0": (gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.MultiDiscrete([2, 3])),
    "WmsimToyMultiBinary-v0": (gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.MultiBinary(4)),
}


@pytest.fixture(scope="module")
def toys() -> Iterator[None]:
    for env_id in _TOYS:
        gym.register(env_id, entry_point=_make_toy, kwargs={"spaces": _TOYS[env_id]}, max_episode_steps=10)
    yield
    for env_id in _TOYS:
        del gym.registry[env_id]


def test_gym_image_env_resized_and_grayscale(toys: None) -> None:
    spec = EnvSpec.from_id("WmsimToyImage-v0")
    assert spec.obs_type == "pixels" and spec.time_limit == 10
    env = make_env(spec, seed=0)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    obs, _ = env.reset()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    gray = make_env("WmsimToyImage-v0", grayscale=True, size=(32, 48))
    obs, _ = gray.reset(seed=0)
    assert obs.shape == (32, 48, 1) and gray.observation_space.shape == (32, 48, 1)
    check_env(gray, skip_render_check=True)


def test_gym_vector_env_cast_to_float32_and_pixels_from_render(toys: None) -> None:
    env = make_env("WmsimToyVector64-v0", seed=0)
    assert env.observation_space.dtype == np.float32 and env.action_space.dtype == np.float32
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (6,)
    env.step(env.action_space.sample())
    check_env(env, skip_render_check=True)
    pixels = make_env("WmsimToyVector64-v0", obs_type="pixels")
    obs, _ = pixels.reset(seed=0)
    assert pixels.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8) and obs.shape == (
        64,
        64,
        3,
    )
    obs, *_ = pixels.step(pixels.action_space.sample())
    assert int(obs[0, 0, 0]) == 7


@pytest.mark.parametrize(
    ("env_id", "match"),
    [
        ("WmsimToyDict-v0", r"observation space Dict\(.*is not supported.*FlattenObservation"),
        ("WmsimToy2D-v0", r"observation space Box\(.*\(4, 5\).*is not supported.*ReshapeObservation"),
        (
            "WmsimToyMultiDiscrete-v0",
            r"action space MultiDiscrete\(\[2 3\]\) is not supported.*Discrete\(n\)",
        ),
        ("WmsimToyMultiBinary-v0", r"action space MultiBinary\(4\) is not supported.*TransformAction"),
    ],
)
def test_unsupported_spaces_name_space_and_fix(toys: None, env_id: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_env(env_id)


# -- atari -----------------------------------------------------------------------------------------


def test_pong_pixels_reproducible_and_flags() -> None:
    env = make_env("atari/Pong", seed=0)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)
    assert env.action_space == gym.spaces.Discrete(6)
    first, info = env.reset(seed=0)
    assert info["is_first"] and first.shape == (64, 64, 1) and first.dtype == np.uint8
    trajectories = []
    for _ in range(2):
        obs, _ = env.reset(seed=0)
        frames = [obs]
        for action in [1, 2, 3, 0, 4, 5] * 5:
            frames.append(env.step(action)[0])
        trajectories.append(np.stack(frames))
    np.testing.assert_array_equal(trajectories[0], trajectories[1])
    np.testing.assert_array_equal(trajectories[0][0], first)
    env.action_space.seed(0)
    for _ in range(300):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == (64, 64, 1) and not info["is_first"] and reward in (-1.0, 0.0, 1.0)
        assert info["is_last"] == (terminated or truncated)
    assert obs.std() > 0
    env.close()


def test_pong_rgb_and_short_time_limit() -> None:
    env = make_env("atari/Pong", grayscale=False, time_limit=4)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    steps = _run_episode(env, seed=3)
    assert len(steps) == 5 and steps[0][0].shape == (64, 64, 3)
    _assert_flags(steps, terminal=False)
    env.close()


def test_atari_defaults_follow_dreamerv2() -> None:
    spec = EnvSpec.from_id("atari/Pong")
    assert spec == EnvSpec(
        suite="atari", name="Pong", obs_type="pixels", size=(64, 64), grayscale=True, action_repeat=4,
        sticky_actions=0.25, noop_max=30, life_loss_terminal=False, time_limit=27000,
    )  # fmt: skip
    assert EnvSpec.from_id("atari/ms_pacman").name == "MsPacman"
    assert EnvSpec.from_id("atari/Pong", action_repeat=2).time_limit == 54000


# -- dmc -------------------------------------------------------------------------------------------


def test_dmc_cartpole_pixels() -> None:
    env = make_env("dmc/cartpole-swingup", render_mode="rgb_array")
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert (
        env.action_space == gym.spaces.Box(-1, 1, (1,), np.float32) and env.action_space.dtype == np.float32
    )
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs.std() > 0 and info["is_first"]
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=5)
        frames = [obs] + [env.step(np.array([a], np.float32))[0] for a in (1.0, -1.0, 0.5, 1.0)]
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][0], runs[0][-1])  # the cart moved, and observations are fresh arrays
    check_env(env, skip_render_check=True)
    env.close()
    gray = make_env("dmc/cartpole-swingup", grayscale=True)
    obs, _ = gray.reset(seed=0)
    assert obs.shape == (64, 64, 1) and gray.observation_space.shape == (64, 64, 1)
    gray.close()


def test_dmc_state_full_episode_truncated_and_seeded() -> None:
    env = make_env("dmc/cartpole-swingup", obs_type="state")
    assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
    steps = _run_episode(env, seed=0)
    assert len(steps) == 501 and all(s[0].dtype == np.float32 and s[0].shape == (5,) for s in steps)
    _assert_flags(steps, terminal=False)
    again = _run_episode(env, seed=0, max_steps=20)
    np.testing.assert_array_equal(np.stack([s[0] for s in again]), np.stack([s[0] for s in steps[:21]]))
    other, _ = env.reset(seed=1)
    assert not np.array_equal(other, steps[0][0])
    assert float(env.step(env.action_space.sample())[1]) >= 0.0
    check_env(env, skip_render_check=True)
    env.close()


def test_make_env_seed_applies_to_first_unseeded_reset() -> None:
    first = [make_env("dmc/cartpole-swingup", obs_type="state", seed=7).reset()[0] for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    env = make_env("dmc/cartpole-swingup", obs_type="state", seed=7)
    assert str(env.unwrapped) == "<DMCEnv<dmc/cartpole-swingup>>"
    np.testing.assert_array_equal(env.reset(seed=7)[0], first[0])
    assert not np.array_equal(env.reset()[0], first[0])  # later resets continue the seeded stream
    assert env_spec_of(env) == EnvSpec.from_id("dmc/cartpole-swingup", obs_type="state")
    with pytest.raises(ValueError, match=r"carries no wmsim EnvSpec: make it with wmsim\.envs\.make_env"):
        env_spec_of(env.unwrapped)


def test_dmc_defaults_follow_dreamerv2() -> None:
    spec = EnvSpec.from_id("dmc/cartpole-swingup")
    assert (spec.suite, spec.name, spec.obs_type, spec.size, spec.grayscale) == (
        "dmc", "cartpole-swingup", "pixels", (64, 64), False,
    )  # fmt: skip
    assert (spec.action_repeat, spec.time_limit, spec.camera, spec.sticky_actions) == (2, 500, 0, 0.0)
    assert EnvSpec.from_id("dmc/quadruped-run").camera == 2
    assert EnvSpec.from_id("dmc/ball_in_cup-catch").name == "ball_in_cup-catch"
    assert EnvSpec.from_id("dmc/walker-walk", action_repeat=4).time_limit == 250


# -- EnvSpec and spaces JSON -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        EnvSpec.from_id("atari/Pong"),
        EnvSpec.from_id("dmc/walker-walk", obs_type="state"),
        EnvSpec.from_id("CartPole-v1", time_limit=None, kwargs={"sutton_barto_reward": True}),
        EnvSpec(
            suite="gym", name="Pendulum-v1", obs_type="state", kwargs={"g": 9.81, "extra": [1, {"b": None}]}
        ),
    ],
    ids=["atari", "dmc", "gym", "gym-kwargs"],
)
def test_env_spec_json_round_trip(spec: EnvSpec) -> None:
    text = spec.to_json()
    assert isinstance(json.loads(text)["size"], list)
    back = EnvSpec.from_json(text)
    assert back == spec and isinstance(back.size, tuple) and back.to_json() == text
    assert EnvSpec.from_dict(spec.to_dict()) == spec
    assert hash(back) == hash(spec) and len({spec, back}) == 1


def test_env_spec_from_dict_rejects_bad_input() -> None:
    good = EnvSpec.from_id("atari/Pong").to_dict()
    with pytest.raises(ValueError, match=r"unknown EnvSpec key.*'colour'"):
        EnvSpec.from_dict({**good, "colour": True})
    with pytest.raises(ValueError, match=r"missing key.*'camera'"):
        EnvSpec.from_dict({k: v for k, v in good.items() if k != "camera"})
    for key, value in [("grayscale", "yes"), ("action_repeat", True), ("time_limit", 1.5), ("size", [64]),
                       ("size", "64"), ("name", 3), ("kwargs", [])]:  # fmt: skip
        with pytest.raises(ValueError, match=f"'{key}'"):
            EnvSpec.from_dict({**good, key: value})
    with pytest.raises(ValueError, match="use lists instead of tuples"):
        EnvSpec(suite="gym", name="CartPole-v1", kwargs={"a": (1, 2)})
    with pytest.raises(ValueError, match="not an EnvSpec JSON"):
        EnvSpec.from_json("{")


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(6),
        gym.spaces.Discrete(3, start=0),
        gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        gym.spaces.Box(
            np.array([-4.8, -np.inf, -0.4, -np.inf], np.float32),
            np.array([4.8, np.inf, 0.4, np.inf], np.float32),
        ),
        gym.spaces.Box(-1.5, 2.0, (2, 3), np.float64),
    ],
)
def test_space_json_round_trip(space: gym.Space[Any]) -> None:
    text = json.dumps(space_to_dict(space), allow_nan=False)
    back = space_from_dict(json.loads(text))
    assert back == space and back.dtype == space.dtype


def test_describe_spaces_of_made_env() -> None:
    env = make_env("CartPole-v1")
    described = json.loads(json.dumps(describe_spaces(env), allow_nan=False))
    assert space_from_dict(described["observation"]) == env.observation_space
    assert space_from_dict(described["action"]) == env.action_space
    with pytest.raises(ValueError, match="only Discrete and Box"):
        space_to_dict(gym.spaces.MultiBinary(3))
    with pytest.raises(ValueError, match="not supported"):
        space_from_dict({"type": "Tuple"})


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "match"),
    [
        ("atari/Pongg", r"unknown Atari game 'Pongg'\. Did you mean Pong\?.*atari/<Game>"),
        ("dmc/cartpole-fly", r"unknown dm_control task 'fly'.*valid tasks are .*dmc/cartpole-swingup"),
        ("dmc/cartpol-swingup", r"unknown dm_control domain 'cartpol'.*Did you mean cartpole"),
        ("dmc/cartpole", r"malformed dmc id 'dmc/cartpole'.*dmc/<domain>-<task>"),
        ("atari/", r"malformed environment id 'atari/'"),
        (
            "NoSuchEnv-v0",
            r"^unknown environment id 'NoSuchEnv-v0': use atari/<Game>, dmc/<domain>-<task> or a registered "
            r"Gymnasium id such as CartPole-v1",
        ),
    ],
)
def test_bad_ids_say_how_ids_look(env_id: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EnvSpec.from_id(env_id)
    with pytest.raises(ValueError, match=match):
        make_env(env_id)


def test_bad_overrides_and_fields(toys: None) -> None:
    with pytest.raises(
        ValueError, match=r"unknown EnvSpec override\(s\) colour: valid ones are obs_type, size"
    ):
        EnvSpec.from_id("CartPole-v1", colour=True)
    with pytest.raises(ValueError, match="unknown EnvSpec override"):
        make_env(EnvSpec.from_id("CartPole-v1"), name="Pendulum-v1")
    with pytest.raises(ValueError, match="pixel observations only"):
        EnvSpec.from_id("atari/Pong", obs_type="state")
    with pytest.raises(ValueError, match="obs_type 'rgb' is unknown"):
        EnvSpec.from_id("dmc/walker-walk", obs_type="rgb")
    with pytest.raises(ValueError, match="noop_max is for Atari games only"):
        EnvSpec.from_id("CartPole-v1", noop_max=3)
    with pytest.raises(ValueError, match="observations are images"):
        make_env("WmsimToyImage-v0", obs_type="state")
