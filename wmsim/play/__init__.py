"""Look at a world model and play it: the dream in a window driven by the keyboard, an agent's dream
next to the real game as a video, and the same views as uint8 frames for notebooks.

- :func:`dream_frames` — ``(T + 1, H, W, 3)`` uint8 frames of a dream (and the real env beside it);
- :func:`watch` — a policy plays the dream and the real env side by side; writes an MP4 or GIF;
- :func:`play` — a pygame window, the keyboard drives the model's actions (:mod:`wmsim.play.keymap`);
- :class:`DreamSession` — the dream (and real env) stepping and drawing that all three share.

Names load on first use: ``import wmsim.play`` imports neither torch nor pygame, and pygame is only
imported by :func:`play` and by :func:`watch` with a window.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ContinuousKeyMap": "keymap",
    "DiscreteKeyMap": "keymap",
    "KeyMap": "keymap",
    "action_meanings": "keymap",
    "keymap_for": "keymap",
    "DreamSession": "session",
    "LatentFilterPolicy": "session",
    "dream_frames": "frames",
    "frame_rate": "frames",
    "run_policy": "frames",
    "write_video": "frames",
    "NoDisplayError": "player",
    "PlayResult": "player",
    "Player": "player",
    "display_problem": "player",
    "play": "player",
    "WatchResult": "watcher",
    "watch": "watcher",
}

if TYPE_CHECKING:
    from .frames import dream_frames, frame_rate, run_policy, write_video
    from .keymap import ContinuousKeyMap, DiscreteKeyMap, KeyMap, action_meanings, keymap_for
    from .player import NoDisplayError, Player, PlayResult, display_problem, play
    from .session import DreamSession, LatentFilterPolicy
    from .watcher import WatchResult, watch


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wmsim.play' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ContinuousKeyMap",
    "DiscreteKeyMap",
    "DreamSession",
    "KeyMap",
    "LatentFilterPolicy",
    "NoDisplayError",
    "PlayResult",
    "Player",
    "WatchResult",
    "action_meanings",
    "display_problem",
    "dream_frames",
    "frame_rate",
    "keymap_for",
    "play",
    "run_policy",
    "watch",
    "write_video",
]
