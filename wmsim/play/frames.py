"""Dreams as uint8 frames for notebooks and videos, without a window.

Example (a notebook)::

    import wmsim.play
    frames = wmsim.play.dream_frames("runs/pong/bundle", steps=100, side_by_side=True)
    frames.shape  # (101, H, W, 3) uint8: dream | real, with rewards, returns and episode status
    wmsim.play.write_video(frames, "pong_dream.gif", fps=wmsim.play.frame_rate(bundle.env_spec))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..envs import EnvSpec, make_env
from .session import DreamSession

#: Frame rate (agent steps per second) where the env does not say.
DEFAULT_FPS = 15.0
#: The Atari 2600's frame rate (frames per second); an agent step is ``action_repeat`` frames.
ATARI_HZ = 60.0

Policy = Callable[[Any], Any]


def frame_rate(spec: EnvSpec, env: gym.Env | None = None) -> float:
    """Agent steps per second of the real game: Atari ``60 / action_repeat`` (15 for the DreamerV2
    protocol); dm_control ``1 / (control timestep x action repeat)``; Gymnasium envs their
    ``metadata["render_fps"]`` divided by the action repeat; :data:`DEFAULT_FPS` otherwise. ``env``:
    the real env if one is at hand (else a gym or dmc env is made briefly to read its metadata)."""
    if spec.suite == "atari":
        return ATARI_HZ / spec.action_repeat
    fps: Any = None
    try:
        if env is None:
            probe = make_env(spec)
            fps = probe.metadata.get("render_fps")
            probe.close()
        else:
            fps = env.metadata.get("render_fps")
    except Exception:  # an env that cannot be made here (no EGL, missing suite): use the default
        fps = None
    if not fps or not np.isfinite(float(fps)) or float(fps) <= 0:
        return DEFAULT_FPS
    if spec.suite == "gym":  # DMCEnv's render_fps already counts its action repeat
        return float(fps) / spec.action_repeat
    return float(fps)


def _reset_hook(policy: Any) -> None:
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()


def run_policy(
    session: DreamSession,
    steps: int,
    policy: Policy | None = None,
    real_policy: Policy | None = None,
    on_frame: Callable[[np.ndarray], None] | None = None,
) -> list[np.ndarray]:
    """Step ``session`` ``steps`` times and return its frames, the first before any step
    (``steps + 1`` arrays ``(H, W, 3)`` uint8).

    ``policy(obs) -> action`` acts in each dream on :meth:`DreamSession.policy_obs`; None: one random
    action per step for all dreams. The real env (side by side) takes the first dream's action, or
    ``real_policy(real_obs)``'s when given. A policy with a ``reset()`` method has it called at every
    episode start. ``on_frame(frame)`` sees each frame as it is drawn (a live window)."""
    if steps < 0:
        raise ValueError(f"steps={steps} must be >= 0")
    frames = [session.frame()]
    if on_frame is not None:
        on_frame(frames[0])
    for _ in range(steps):
        if session.pending_reset:  # every episode has ended: this step starts new ones
            session.step(None)
            frames.append(session.frame())
            if on_frame is not None:
                on_frame(frames[-1])
            continue
        if session.just_reset:
            for p in (policy, real_policy):
                _reset_hook(p)
        if policy is None:
            action: Any = session.sample_action()
        elif session.num_envs == 1:
            action = policy(session.policy_obs(0))
        else:
            action = np.stack([np.asarray(policy(session.policy_obs(i))) for i in range(session.num_envs)])
        real_action = None
        real = session.real_track
        if real_policy is not None and real is not None and not real.done and session.real_obs is not None:
            real_action = real_policy(session.real_obs)
        session.step(action, real_action)
        frames.append(session.frame())
        if on_frame is not None:
            on_frame(frames[-1])
    return frames


def dream_frames(
    model: Any,
    policy: Policy | None = None,
    *,
    steps: int = 100,
    side_by_side: bool = False,
    from_real: bool = False,
    real_policy: Policy | None = None,
    num_envs: int = 1,
    policy_obs: str = "decoded",
    seed: int = 0,
    scale: int | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Frames of a dream: ``(steps + 1, H, W, 3)`` uint8, the first before any step.

    Args:
        model: a :class:`~wmsim.Bundle`, bundle directory or known model name.
        policy: ``obs -> action`` for one dream (``obs``: decoded observations in the real env's format, or
            latent features with ``policy_obs="latent"``); None plays random actions.
        side_by_side: the real env beside the dream, taking the same actions (or ``real_policy``'s).
        from_real: dreams start from the real env's first frame instead of the bundle's start states.
        num_envs: dreams shown together (each a different sample of the model).
        seed, scale, device: see :class:`DreamSession`.

    Image models show the (upscaled) observations; vector models (CartPole, Pendulum) a bar plot of the
    state per dimension, dream filled and real outlined. Each panel lists step, reward, return and
    episode status (``TERMINATED`` / ``TRUNCATED``).
    """
    session = DreamSession(
        model,
        num_envs=num_envs,
        side_by_side=side_by_side,
        from_real=from_real,
        policy_obs=policy_obs,
        seed=seed,
        scale=scale,
        device=device,
    )
    try:
        return np.stack(run_policy(session, steps, policy, real_policy))
    finally:
        session.close()


VIDEO_SUFFIXES = (".mp4", ".gif")


def imageio_video_plugin() -> bool:
    """Whether imageio can write MP4 here (its PyAV or imageio-ffmpeg plugin is installed)."""
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("av", "imageio_ffmpeg"))


def write_video(frames: Any, path: str | os.PathLike, fps: float = DEFAULT_FPS) -> Path:
    """Write ``frames`` (``(T, H, W, 3)`` uint8, or a list of such frames) as an MP4 or GIF, by the
    suffix of ``path``, at ``fps`` frames per second. GIFs go through imageio (Pillow); MP4 through
    imageio where it has an FFmpeg/PyAV plugin, else OpenCV's writer (MPEG-4 part 2, ``mp4v``).
    Returns the path."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"cannot write a video to {out}: use a name ending in .mp4 or .gif")
    stack = np.asarray(frames)
    if stack.ndim != 4 or stack.shape[-1] != 3 or len(stack) == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 stack, got {stack.shape}")
    if fps <= 0:
        raise ValueError(f"fps={fps} must be positive")
    stack = stack.astype(np.uint8, copy=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    import imageio.v3 as iio

    if suffix == ".gif":
        iio.imwrite(out, stack, duration=1000.0 / fps, loop=0)
        return out
    # Video codecs want even sizes.
    pad_h, pad_w = stack.shape[1] % 2, stack.shape[2] % 2
    if pad_h or pad_w:
        stack = np.pad(stack, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    if imageio_video_plugin():
        iio.imwrite(out, stack, fps=fps)
        return out
    import cv2  # no imageio video plugin here: OpenCV's own FFmpeg

    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), stack.shape[2:0:-1])
    if not writer.isOpened():
        raise OSError(
            f"cannot write {out}: neither imageio nor OpenCV has an MP4 encoder here; write a .gif instead"
            " or install imageio[ffmpeg]"
        )
    try:
        for frame in stack:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
    finally:
        writer.release()
    return out
