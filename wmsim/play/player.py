"""``wmsim play``: a dream in a pygame window, driven by the keyboard.

Keys (besides the action keys of :mod:`wmsim.play.keymap`)::

    r       new episodes (dreams and real env)       p        pause / resume
    v       start / stop recording a video            .        one step while paused
    f       restart the dreams from the real frame    esc, q   quit

pygame is imported here only, when a window is opened.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import render
from .frames import frame_rate, write_video
from .keymap import ContinuousKeyMap, DiscreteKeyMap, action_meanings, keymap_for
from .session import DreamSession

COMMAND_KEYS = {
    "r": "reset",
    "p": "pause",
    "v": "record",
    ".": "step",
    "f": "sync",
    "escape": "quit",
    "q": "quit",
}
HELP = "r reset   p pause   . step   v record   f dream from real   esc quit"


def import_pygame() -> Any:
    """pygame, imported without its greeting line."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    return pygame


class NoDisplayError(RuntimeError):
    """No window can be opened here (no display, or SDL cannot use the one named)."""


def display_problem() -> str | None:
    """Why no window can be opened here, or None when one can. Without ``SDL_VIDEODRIVER``, Linux needs
    ``DISPLAY`` or ``WAYLAND_DISPLAY``; then SDL must initialise its video driver (``SDL_VIDEODRIVER=dummy``
    works anywhere and opens an invisible window, as the tests do)."""
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if (
        not driver
        and sys.platform.startswith("linux")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        return "no display: neither DISPLAY nor WAYLAND_DISPLAY is set (and SDL_VIDEODRIVER is not)"
    pygame = import_pygame()
    if pygame.display.get_init():
        return None
    try:
        pygame.display.init()
    except pygame.error as exc:
        return f"SDL cannot open a window with video driver {driver or '(default)'}: {exc}"
    pygame.display.quit()
    return None


def require_display(command: str = "wmsim play", model: Any = None) -> None:
    """Raise :class:`NoDisplayError` with what to do instead when no window can be opened (``model``:
    the model argument, named in the suggested command)."""
    problem = display_problem()
    if problem is not None:
        name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else "MODEL"
        raise NoDisplayError(
            f"{command} needs a window, but there is {problem}. Run it on a desktop (or over ssh -X), or"
            f" record the dream without a window: `wmsim watch {name} --out dream.mp4` (from Python:"
            " wmsim.play.watch or wmsim.play.dream_frames)."
        )


@dataclass
class PlayResult:
    """What a play session did: ``frames`` drawn, dream ``steps`` taken, ``videos`` written, and the
    finished episodes' returns per dream and of the real env."""

    frames: int
    steps: int
    videos: list[Path] = field(default_factory=list)
    dream_returns: list[list[float]] = field(default_factory=list)
    real_returns: list[float] = field(default_factory=list)


class Window:
    """A pygame window that shows uint8 frames ``(H, W, 3)``, resized to each frame."""

    def __init__(self, caption: str) -> None:
        require_display()
        pygame = import_pygame()
        self.pygame = pygame
        pygame.display.init()
        pygame.display.set_caption(caption)
        self.screen: Any = None
        self.clock = pygame.time.Clock()

    def show(self, frame: np.ndarray) -> None:
        pygame = self.pygame
        height, width = frame.shape[:2]
        if self.screen is None or self.screen.get_size() != (width, height):
            self.screen = pygame.display.set_mode((width, height))
        pygame.surfarray.blit_array(self.screen, np.ascontiguousarray(frame.swapaxes(0, 1)))
        pygame.display.flip()

    def tick(self, fps: float) -> None:
        """Wait so that frames come at most ``fps`` per second (0: no cap)."""
        self.clock.tick(fps)

    def close(self) -> None:
        self.pygame.display.quit()


class Player:
    """The interactive loop: keyboard -> actions -> dream (and real env) -> window, at ``fps`` frames
    per second (0: as fast as it goes).

    Args:
        session: the dreams (and real env) to play.
        keymap: keys -> actions (default: :func:`~wmsim.play.keymap.keymap_for` the action space, with
            the real env's action meanings).
        fps: frame-rate cap; default :func:`~wmsim.play.frames.frame_rate` of the real game.
        record_dir: where ``v`` writes its videos (``play-<time>.<video_format>``).
        video_format: ``"mp4"`` or ``"gif"``.
    """

    def __init__(
        self,
        session: DreamSession,
        keymap: DiscreteKeyMap | ContinuousKeyMap | None = None,
        *,
        fps: float | None = None,
        record_dir: str | os.PathLike = ".",
        video_format: str = "mp4",
    ) -> None:
        if video_format not in ("mp4", "gif"):
            raise ValueError(f"video_format={video_format!r}: choose 'mp4' or 'gif'")
        self.session = session
        if keymap is None:
            keymap = keymap_for(session.action_space, _meanings(session))
        self.keymap = keymap
        self.fps = float(fps) if fps is not None else frame_rate(session.spec, session.real_env)
        self.record_dir = Path(record_dir)
        self.video_format = video_format
        self.held: set[str] = set()
        self.paused = False
        self.recording: list[np.ndarray] | None = None
        self.videos: list[Path] = []
        self.actions: list[Any] = []  # every action sent to the dreams, in order

    # ------------------------------------------------------------------ commands
    def _command(self, name: str) -> bool:
        """Run a command key; False to quit."""
        session = self.session
        if name == "quit":
            return False
        if name == "reset":
            session.reset()
        elif name == "pause":
            self.paused = not self.paused
        elif name == "record":
            if self.recording is None:
                self.recording = [session.frame()]
            else:
                self._save_recording()
        elif name == "sync" and session.real_env is not None:
            session.sync_from_real()
        return True

    def _save_recording(self) -> None:
        frames, self.recording = self.recording, None
        if not frames:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.record_dir / f"play-{stamp}-{len(self.videos)}.{self.video_format}"
        self.videos.append(write_video(np.stack(frames), path, fps=self.fps or 15.0))
        print(f"wmsim play: wrote {path} ({len(frames)} frames)")

    def _status(self, width: int) -> np.ndarray:
        state = "PAUSED" if self.paused else "playing"
        if self.recording is not None:
            state += f"   REC {len(self.recording)} frames"
        chars = max(20, width // 7)  # about 7 pixels per character
        keys = textwrap.wrap("   ".join(self.keymap.describe()), chars) + textwrap.wrap(HELP, chars)
        colour = render.STATUS_COLOURS["terminated"] if self.recording is not None else render.TEXT
        return render.text_strip(width, [(state, colour)] + [(line, render.DIM_TEXT) for line in keys])

    def view(self) -> np.ndarray:
        """What the window shows: the session's frame with a status and help strip below."""
        frame = self.session.frame()
        return np.concatenate([frame, self._status(frame.shape[1])], axis=0)

    # ------------------------------------------------------------------ the loop
    def run(self, max_frames: int | None = None, script: Callable[[int], None] | None = None) -> PlayResult:
        """Open the window and play until quit (``esc``/``q``/closing the window) or ``max_frames``.

        ``script(frame_index)`` runs before the events of each frame are read, e.g. to post scripted
        key events (``pygame.event.post``) in tests or demos."""
        pygame = import_pygame()
        focus_lost = getattr(pygame, "WINDOWFOCUSLOST", None)
        window = Window(f"wmsim play: {self.session.spec.id} dream")
        frames = 0
        try:
            window.show(self.view())
            running = True
            while running and (max_frames is None or frames < max_frames):
                if script is not None:
                    script(frames)
                single_step = False
                for event in pygame.event.get():
                    if event.type == pygame.QUIT:
                        running = False
                    elif event.type == pygame.KEYDOWN:
                        name = pygame.key.name(event.key)
                        command = COMMAND_KEYS.get(name)
                        if command == "step":
                            single_step = True
                        elif command is not None:
                            running = self._command(command) and running
                        else:
                            self.held.add(name)
                    elif event.type == pygame.KEYUP:
                        self.held.discard(pygame.key.name(event.key))
                    elif event.type == focus_lost:  # key releases go elsewhere: let go of every key
                        self.held.clear()
                if not running:
                    break
                if not self.paused or single_step:
                    action = self.keymap.action(self.held)
                    self.actions.append(action)
                    self.session.step(action)
                    if self.recording is not None:
                        self.recording.append(self.session.frame())
                window.show(self.view())
                window.tick(self.fps)
                frames += 1
        finally:
            if self.recording is not None:
                self._save_recording()
            window.close()
        session = self.session
        return PlayResult(
            frames=frames,
            steps=session.steps,
            videos=list(self.videos),
            dream_returns=[list(t.returns) for t in session.tracks],
            real_returns=list(session.real_track.returns) if session.real_track is not None else [],
        )


def _meanings(session: DreamSession) -> list[str] | None:
    """The real env's action meanings (made briefly when the session has no real env)."""
    import gymnasium as gym

    if not isinstance(session.action_space, gym.spaces.Discrete):
        return None
    if session.real_env is not None:
        return action_meanings(session.real_env, session.spec.id)
    if session.spec.suite == "atari":
        from ..envs import make_env

        env = make_env(session.spec)
        try:
            return action_meanings(env, session.spec.id)
        finally:
            env.close()
    return action_meanings(None, session.spec.name)


def play(
    model: Any,
    *,
    side_by_side: bool = False,
    from_real: bool = False,
    num_envs: int = 1,
    fps: float | None = None,
    scale: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    record_dir: str | os.PathLike = ".",
    video_format: str = "mp4",
    max_frames: int | None = None,
    script: Callable[[int], None] | None = None,
) -> PlayResult:
    """Play ``model``'s dream in a window (see the module docstring for the keys and
    :mod:`wmsim.play.keymap` for the action keys). Raises :class:`NoDisplayError` (saying what to do
    instead) where no window can be opened. Arguments as for :class:`DreamSession` and :class:`Player`."""
    require_display("wmsim play", model)
    session = DreamSession(
        model,
        num_envs=num_envs,
        side_by_side=side_by_side,
        from_real=from_real,
        seed=seed,
        scale=scale,
        device=device,
    )
    try:
        player = Player(session, fps=fps, record_dir=record_dir, video_format=video_format)
        return player.run(max_frames=max_frames, script=script)
    finally:
        session.close()
