"""Playing and watching dreams: key maps, the pygame player (headless, scripted key events), side-by-side
real envs, recordings, notebook frames, vector-only models, the no-display message and the CLI."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from wmsim.bundle import Bundle, save_bundle
from wmsim.dream.simulator import DreamSimulator
from wmsim.envs import make_env
from wmsim.play import (
    DiscreteKeyMap,
    DreamSession,
    LatentFilterPolicy,
    NoDisplayError,
    Player,
    action_meanings,
    display_problem,
    dream_frames,
    frame_rate,
    keymap_for,
    play,
    render,
    run_policy,
    watch,
    write_video,
)
from wmsim.play.frames import imageio_video_plugin

pygame = pytest.importorskip("pygame")

PONG_MEANINGS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
FULL_MEANINGS = [
    "NOOP",
    "FIRE",
    "UP",
    "RIGHT",
    "LEFT",
    "DOWN",
    "UPRIGHT",
    "UPLEFT",
    "DOWNRIGHT",
    "DOWNLEFT",
    "UPFIRE",
    "RIGHTFIRE",
    "LEFTFIRE",
    "DOWNFIRE",
    "UPRIGHTFIRE",
    "UPLEFTFIRE",
    "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
]


@pytest.fixture
def headless(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """SDL's dummy video driver: windows open invisibly, key events come from pygame.event.post."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    yield
    pygame.display.quit()


def keys(script: dict[int, list[tuple[str, str]]]) -> Callable[[int], None]:
    """A Player script posting ``(kind, key name)`` events (kind ``"down"``/``"up"``) at given frames."""

    def post(frame: int) -> None:
        for kind, name in script.get(frame, []):
            event_type = pygame.KEYDOWN if kind == "down" else pygame.KEYUP
            pygame.event.post(pygame.event.Event(event_type, key=pygame.key.key_code(name)))

    return post


def spy_real_steps(session: DreamSession) -> list[Any]:
    """Record every action the session's real env receives."""
    assert session.real_env is not None
    received: list[Any] = []
    inner = session.real_env.step

    def step(action: Any) -> Any:
        received.append(action)
        return inner(action)

    session.real_env.step = step  # type: ignore[method-assign]
    return received


def spy_dream_steps(session: DreamSession) -> list[np.ndarray]:
    received: list[np.ndarray] = []
    inner = session.dream.step

    def step(actions: Any) -> Any:
        received.append(np.array(actions))
        return inner(actions)

    session.dream.step = step  # type: ignore[method-assign]
    return received


def count_frames(path: Path) -> int:
    """Frames of a video, read back with imageio (or OpenCV for MP4 where imageio has no plugin)."""
    import imageio.v3 as iio

    if path.suffix == ".gif" or imageio_video_plugin():
        return len(iio.imread(path, index=None))
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


# ---------------------------------------------------------------------------------------------- key maps
def test_atari_keys_follow_the_games_action_meanings(pong_bundle: Bundle) -> None:
    env = make_env(pong_bundle.env_spec)
    meanings = action_meanings(env)
    env.close()
    assert meanings == PONG_MEANINGS  # ale-py's get_action_meanings() of the minimal action set
    km = keymap_for(gym.spaces.Discrete(6), meanings)
    assert km.action(set()) == 0  # no key: NOOP
    assert km.action({"space"}) == 1
    assert km.action({"right"}) == 2
    assert km.action({"left"}) == 3
    assert km.action({"right", "space"}) == 4
    assert km.action({"left", "space"}) == 5
    assert km.action({"up"}) == 0  # Pong has no UP: nothing to add, the no-op
    assert km.action({"up", "right"}) == 2  # the closest action that adds nothing
    assert km.action({"left", "right", "space"}) == 1  # opposite arrows cancel
    assert km.action({"3"}) == 2  # digit keys pick actions by index
    full = DiscreteKeyMap(18, FULL_MEANINGS)
    assert FULL_MEANINGS[full.action({"up", "right", "space"})] == "UPRIGHTFIRE"
    assert FULL_MEANINGS[full.action({"down", "left"})] == "DOWNLEFT"
    assert FULL_MEANINGS[full.action({"down"})] == "DOWN"
    assert any("space: FIRE" in line for line in km.describe())


def test_continuous_and_classic_control_keymaps() -> None:
    pendulum = keymap_for(gym.spaces.Box(-2.0, 2.0, (1,), np.float32))
    assert pendulum.action({"right"}).tolist() == [2.0]
    assert pendulum.action({"left"}).tolist() == [-2.0]
    assert pendulum.action(set()).tolist() == [0.0]
    assert pendulum.action({"left", "right"}).tolist() == [0.0]
    low = np.array([-1, -np.inf, 0, -1, -1, -1, -1, -1], np.float32)
    high = np.array([1, np.inf, 1, 1, 1, 1, 1, 1], np.float32)
    km = keymap_for(gym.spaces.Box(low, high, dtype=np.float32))
    action = km.action({"up", "d", "w"})
    assert action.dtype == np.float32 and action.shape == (8,)
    assert action.tolist() == [0, 1, 1, 1, 0, 0, 0, 0]  # up: dim 1 (+1 for an infinite bound), d: 2, w: 3
    assert km.action({"down", "a"}).tolist()[:3] == [0, -1, 0]  # dim 2's range is [0, 1]
    cartpole = keymap_for(gym.spaces.Discrete(2), action_meanings(None, "CartPole-v1"))
    assert (cartpole.action({"left"}), cartpole.action({"right"}), cartpole.action(set())) == (0, 1, 0)
    assert keymap_for(gym.spaces.Discrete(3), None).action({"2"}) == 1
    with pytest.raises(ValueError, match="no keyboard mapping"):
        keymap_for(gym.spaces.MultiDiscrete([2, 2]))


def test_frame_rate_is_the_real_games(
    pong_bundle: Bundle, cartpole_bundle: Bundle, pendulum_bundle: Bundle
) -> None:
    assert frame_rate(pong_bundle.env_spec) == 15.0  # 60 Hz / action repeat 4
    assert frame_rate(cartpole_bundle.env_spec) == 50.0  # metadata render_fps
    assert frame_rate(pendulum_bundle.env_spec) == 30.0
    assert frame_rate(cartpole_bundle.env_spec.replace(action_repeat=2)) == 25.0
    no_fps = types.SimpleNamespace(metadata={})
    assert frame_rate(cartpole_bundle.env_spec, no_fps) == 15.0  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the player
def test_scripted_keys_drive_the_dream_and_the_real_env_alike(headless: None, pong_bundle: Bundle) -> None:
    session = DreamSession(pong_bundle, side_by_side=True, seed=1)
    real = spy_real_steps(session)
    dream = spy_dream_steps(session)
    script = keys(
        {
            0: [("down", "right")],
            2: [("down", "space")],
            3: [("up", "right")],
            4: [("up", "space"), ("down", "left")],
            5: [("up", "left")],
        }
    )
    result = Player(session, fps=0).run(max_frames=7, script=script)
    expected = [2, 2, 4, 1, 3, 0, 0]  # RIGHT, RIGHT, RIGHTFIRE, FIRE, LEFT, NOOP, NOOP
    assert [int(a[0]) for a in dream] == expected
    assert [int(a) for a in real] == expected  # the real env got the very same actions
    assert result.frames == 7 and result.steps == 7
    session.close()


def test_continuous_keys_reach_the_real_env(headless: None, pendulum_bundle: Bundle) -> None:
    session = DreamSession(pendulum_bundle, side_by_side=True)
    real = spy_real_steps(session)
    script = keys({0: [("down", "right")], 2: [("up", "right"), ("down", "left")]})
    Player(session, fps=0).run(max_frames=4, script=script)
    assert [float(a[0]) for a in real] == [2.0, 2.0, -2.0, -2.0]
    assert all(np.asarray(a).dtype == np.float32 for a in real)
    session.close()


@pytest.mark.parametrize("video_format", ["gif", "mp4"])
def test_recording_writes_a_video_of_the_recorded_steps(
    headless: None, pong_bundle: Bundle, tmp_path: Path, video_format: str
) -> None:
    session = DreamSession(pong_bundle, side_by_side=True)
    player = Player(session, fps=0, record_dir=tmp_path, video_format=video_format)
    # v at frame 1 starts (the current frame, then the steps of frames 1-4), v at frame 5 stops.
    result = player.run(max_frames=8, script=keys({1: [("down", "v")], 5: [("down", "v")]}))
    assert len(result.videos) == 1 and result.videos[0].suffix == f".{video_format}"
    assert count_frames(result.videos[0]) == 5
    session.close()


def test_pause_step_and_reset_keys(headless: None, pong_bundle: Bundle) -> None:
    session = DreamSession(pong_bundle, side_by_side=True)
    player = Player(session, fps=0)
    script = keys({0: [("down", "p")], 3: [("down", ".")], 4: [("down", "p")], 6: [("down", "r")]})
    player.run(max_frames=7, script=script)
    # paused at frames 0-2, one step at 3, playing from 4, reset at 6 (then its step)
    assert session.steps == 4 and len(player.actions) == 4
    assert session.episodes == 2 and session.real_track is not None and session.real_track.step == 1
    session.close()


def test_quit_key_ends_play_and_play_opens_its_own_session(headless: None, pong_bundle: Bundle) -> None:
    result = play(pong_bundle, fps=0, max_frames=50, script=keys({3: [("down", "escape")]}))
    # Every frame before the quit is a step, or the reset after an episode of the untrained dream ended.
    assert result.frames == 3 and result.steps + len(result.dream_returns) == 3


# ---------------------------------------------------------------------------------------------- real frames
def test_from_real_starts_the_dreams_from_the_real_frame(
    pong_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[np.ndarray] = []
    inner = DreamSimulator.reset_from_observation

    def spy(self: DreamSimulator, obs: Any, mask: Any = None) -> None:
        starts.append(obs.cpu().numpy())
        inner(self, obs, mask)

    monkeypatch.setattr(DreamSimulator, "reset_from_observation", spy)
    session = DreamSession(pong_bundle, from_real=True, num_envs=2)
    assert session.real_env is not None and session.real_track is None  # a real env, not shown
    assert len(starts) == 1 and starts[0].shape == (2, 64, 64, 1)
    np.testing.assert_array_equal(starts[0][0], session.real_obs)
    np.testing.assert_array_equal(starts[0][1], session.real_obs)
    session.reset()  # the next episode starts from the next real first frame
    assert len(starts) == 2
    np.testing.assert_array_equal(starts[1][0], session.real_obs)
    session.step(0)
    session.sync_from_real()  # and any time from the real env's current frame
    assert len(starts) == 3 and session.tracks[0].step == 0
    session.close()


def test_policies_in_the_dream_and_in_the_real_env(pong_bundle: Bundle) -> None:
    session = DreamSession(pong_bundle, side_by_side=True)
    real = spy_real_steps(session)
    seen: list[tuple[int, ...]] = []

    class Policy:
        resets = 0

        def __call__(self, obs: np.ndarray) -> int:
            seen.append(obs.shape)
            return 4

        def reset(self) -> None:
            self.resets += 1

    policy = Policy()
    frames = run_policy(session, 3, policy)
    assert len(frames) == 4 and seen == [(64, 64, 1)] * 3  # decoded pixels in the real env's format
    assert [int(a) for a in real] == [4, 4, 4] and policy.resets == 1
    run_policy(session, 2, policy, real_policy=lambda obs: 5)  # the real env's own policy
    assert [int(a) for a in real[3:]] == [5, 5]
    session.close()


def test_episodes_end_and_restart_with_the_policy_reset(pong_bundle: Bundle) -> None:
    session = DreamSession(pong_bundle, time_limit=2)  # dream only: each episode lasts at most 2 steps

    class Policy:
        resets = 0

        def __call__(self, obs: np.ndarray) -> int:
            return 0

        def reset(self) -> None:
            self.resets += 1

    policy = Policy()
    frames = run_policy(session, 7, policy)
    assert len(frames) == 8
    assert session.episodes >= 3 and policy.resets == session.episodes  # one reset per episode start
    assert len(session.tracks[0].returns) >= 2
    session.close()


def test_latent_policy_acts_in_the_real_env_through_the_posterior(pong_bundle: Bundle) -> None:
    feats: list[np.ndarray] = []

    def latent_policy(feat: np.ndarray) -> int:
        feats.append(feat)
        return 1

    policy = LatentFilterPolicy(pong_bundle, latent_policy)
    env = make_env(pong_bundle.env_spec)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(policy(obs))
    env.close()
    size = pong_bundle.model.config.rssm.feat_size
    assert [f.shape for f in feats] == [(size,)] * 3 and feats[0].dtype == np.float32


# ------------------------------------------------------------------------------------------ frames, videos
def test_dream_frames_for_a_notebook(pong_bundle: Bundle) -> None:
    frames = dream_frames(pong_bundle, steps=4, side_by_side=True)
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == 5
    assert frames.shape[2] == 2 * 256 + 4  # dream | real, 64 px upscaled 4x, 4 px apart
    alone = dream_frames(pong_bundle, policy=lambda obs: 0, steps=2, num_envs=3, scale=2)
    assert alone.shape[0] == 3 and alone.shape[2] == 3 * 128 + 2 * 4


@pytest.mark.parametrize("which", ["cartpole_bundle", "pendulum_bundle"])
def test_vector_models_show_a_plot_of_the_state(which: str, request: pytest.FixtureRequest) -> None:
    bundle: Bundle = request.getfixturevalue(which)
    frames = dream_frames(bundle, steps=3, side_by_side=True)
    assert frames.dtype == np.uint8 and frames.shape[0] == 4 and frames.shape[-1] == 3
    last = frames[-1]
    width = last.shape[1]
    dream_panel, real_panel = last[:, : width // 2], last[:, width // 2 :]
    for colour in (render.DREAM_COLOUR, render.REAL_COLOUR):  # dream bars and the real state's beside them
        assert (dream_panel == colour).all(-1).sum() > 20
    assert (real_panel == render.REAL_COLOUR).all(-1).sum() > 20
    assert (real_panel == render.DREAM_COLOUR).all(-1).sum() == 0


def test_watch_writes_a_video_with_the_returns(pong_bundle: Bundle, tmp_path: Path) -> None:
    result = watch(pong_bundle, lambda obs: 2, out=tmp_path / "watch.gif", steps=6)
    assert result.path.exists() and result.frames == 7 and result.fps == 15.0
    assert count_frames(result.path) == 7
    assert result.real_running is not None  # a real Pong episode outlasts 6 steps


def test_write_video_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "x.avi")
    with pytest.raises(ValueError, match="non-empty"):
        write_video(np.zeros((0, 8, 8, 3), np.uint8), tmp_path / "x.gif")
    odd = write_video(np.zeros((3, 7, 9, 3), np.uint8), tmp_path / "odd.mp4")  # padded to even sizes
    assert count_frames(odd) == 3


# ---------------------------------------------------------------------------------------------- no display
def test_no_display_says_to_use_watch(monkeypatch: pytest.MonkeyPatch, pong_bundle: Bundle) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    problem = display_problem()
    assert problem is not None and "DISPLAY" in problem
    with pytest.raises(NoDisplayError, match="wmsim watch"):
        play(pong_bundle)
    monkeypatch.setenv("SDL_VIDEODRIVER", "no-such-driver")
    problem = display_problem()
    assert problem is not None and "no-such-driver" in problem


# ---------------------------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def policy_bundle(cartpole_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CartPole test bundle with an (untrained) DreamerV2 actor stored in it."""
    import torch

    from agents.dreamerv2 import ActorCritic, agent_preset, policy_for_bundle

    torch.manual_seed(0)
    agent = ActorCritic(agent_preset("tiny"), cartpole_bundle.model)
    b = cartpole_bundle
    return save_bundle(
        tmp_path_factory.mktemp("policy") / "bundle",
        b.model,
        b.env_spec,
        b.spaces,
        b.start_states,
        policy=policy_for_bundle(agent),
    )


def test_cli_play_without_a_display(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], policy_bundle: Path
) -> None:
    from agents.cli import main

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["play", str(policy_bundle), "--side-by-side"]) == 2
    assert "wmsim watch" in capsys.readouterr().err


def test_cli_play_headless(headless: None, capsys: pytest.CaptureFixture[str], policy_bundle: Path) -> None:
    from agents.cli import main

    assert main(["play", str(policy_bundle), "--side-by-side", "--fps", "1000", "--max-frames", "3"]) == 0
    assert "played 3 steps" in capsys.readouterr().out


def test_cli_watch_with_the_bundles_policy_and_an_sb3_zip(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    policy_bundle: Path,
    tmp_path: Path,
) -> None:
    from stable_baselines3 import PPO

    from agents.cli import main
    from wmsim.dream.sb3 import DreamSB3VecEnv

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):  # headless: no window, video only
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    out = tmp_path / "bundle_policy.gif"
    assert main(["watch", str(policy_bundle), "--steps", "5", "--out", str(out)]) == 0
    assert count_frames(out) == 6
    assert "real: finished episode returns" in capsys.readouterr().out

    venv = DreamSB3VecEnv(str(policy_bundle), 1, obs_mode="latent", seed=0)
    PPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu").save(tmp_path / "ppo.zip")
    venv.close()
    out = tmp_path / "sb3.gif"
    args = ["watch", str(policy_bundle), "--policy", str(tmp_path / "ppo.zip"), "--steps", "4"]
    assert main([*args, "--out", str(out)]) == 0
    assert count_frames(out) == 5
    out = tmp_path / "random.gif"
    assert main(["watch", str(policy_bundle), "--policy", "random", "--steps", "3", "--out", str(out)]) == 0
    assert count_frames(out) == 4


def test_cli_watch_of_a_bundle_without_a_policy_says_what_to_do(
    cartpole_bundle: Bundle, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from agents.cli import main

    out = str(tmp_path / "x.gif")
    assert main(["watch", str(cartpole_bundle.path), "--window", "off", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "holds no policy" in err and "--policy random" in err


def test_import_stays_light() -> None:
    code = "import sys, wmsim, wmsim.play; print('pygame' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
