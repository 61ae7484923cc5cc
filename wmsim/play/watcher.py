"""``wmsim watch``: a policy plays the dream and the real env side by side, written as a video (with
the returns drawn in), optionally shown live in a window."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .frames import Policy, frame_rate, run_policy, write_video
from .session import DreamSession


@dataclass
class WatchResult:
    """The video written (``path``, ``frames`` frames at ``fps``) and the returns seen: finished
    episodes per dream and of the real env, plus the episodes still running at the end."""

    path: Path
    frames: int
    fps: float
    dream_returns: list[list[float]] = field(default_factory=list)
    real_returns: list[float] = field(default_factory=list)
    dream_running: list[float] = field(default_factory=list)
    real_running: float | None = None


def watch(
    model: Any,
    policy: Policy | None = None,
    *,
    real_policy: Policy | None = None,
    out: str | os.PathLike = "watch.mp4",
    steps: int = 500,
    fps: float | None = None,
    side_by_side: bool = True,
    from_real: bool = False,
    num_envs: int = 1,
    policy_obs: str = "decoded",
    seed: int = 0,
    scale: int | None = None,
    device: str = "cpu",
    window: bool = False,
) -> WatchResult:
    """Let ``policy`` play ``steps`` steps in the dream, and in the real env beside it, and write the
    frames (``(H, W, 3)`` per step, rewards and returns drawn in) to ``out`` (``.mp4`` or ``.gif``).

    Args:
        policy: ``obs -> action`` in the dream (``obs`` as ``policy_obs`` says: ``"decoded"``, decoded in
            the real env's format, or ``"latent"`` features); None plays random actions.
        real_policy: ``real_obs -> action`` in the real env; None gives the real env the dream's actions
            (then drift between dream and game is visible). A pixel policy can be both; a latent one acts
            in the real env through :class:`~wmsim.play.session.LatentFilterPolicy`.
        fps: of the video; default the real game's (:func:`~wmsim.play.frames.frame_rate`).
        window: also show the frames live in a pygame window (needs a display, see
            :func:`~wmsim.play.player.require_display`), at ``fps``.
        Others as for :class:`DreamSession`.
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
    live: Any = None
    try:
        rate = float(fps) if fps is not None else frame_rate(session.spec, session.real_env)
        on_frame = None
        if window:
            from .player import Window

            live = Window(f"wmsim watch: {session.spec.id}")

            def on_frame(frame: np.ndarray) -> None:
                live.pygame.event.pump()
                live.show(frame)
                live.tick(rate)

        frames = run_policy(session, steps, policy, real_policy, on_frame=on_frame)
        path = write_video(np.stack(frames), out, fps=rate)
        return WatchResult(
            path=path,
            frames=len(frames),
            fps=rate,
            dream_returns=[list(t.returns) for t in session.tracks],
            real_returns=list(session.real_track.returns) if session.real_track is not None else [],
            dream_running=[t.episode_return for t in session.tracks if not t.done],
            real_running=(
                session.real_track.episode_return
                if session.real_track is not None and not session.real_track.done
                else None
            ),
        )
    finally:
        if live is not None:
            live.close()
        session.close()
