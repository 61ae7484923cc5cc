"""Keyboard -> action: which keys drive which of a model's actions.

Keys are named as ``pygame.key.name`` names them (``"up"``, ``"space"``, ``"a"``, ``"1"``); a key map
turns the set of keys held down into one action of the model's (the real env's) action space. Nothing
here imports pygame.

Discrete actions (:class:`DiscreteKeyMap`) are mapped from the real env's action meanings (Atari:
ale-py's ``get_action_meanings()``, e.g. Pong's ``NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE``): the
arrows stand for ``UP``/``DOWN``/``LEFT``/``RIGHT`` and space for ``FIRE``; the action whose meaning is
exactly the held combination is taken, else the one that matches most of it without adding anything
(``UP`` + ``RIGHT`` in a game without ``UPRIGHT`` gives ``UP``), else the no-op. Opposite arrows held
together cancel. With no key held the action is ``NOOP`` where the game has one, else action 0. The
digit keys ``1``..``9``, ``0`` pick actions 0..9 directly (any discrete env, meanings or not).

Continuous actions (:class:`ContinuousKeyMap`): each of the first dimensions has a key pair, negative
then positive::

    dim 0: left / right    dim 1: down / up    dim 2: a / d    dim 3: s / w    dim 4: j / l    dim 5: k / i

A held key sets its dimension to the action space's bound (``high`` for the positive key, ``low`` for
the negative one; +-1 where the bound is infinite); a dimension without a key held rests at 0 (clipped
into its range, so a ``[0, 1]`` throttle rests at 0), and dimensions beyond the sixth stay there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

#: Arrow keys and space -> the components of an Atari action meaning.
ARROWS = {"up": "UP", "down": "DOWN", "left": "LEFT", "right": "RIGHT", "space": "FIRE"}
_OPPOSITE = (("UP", "DOWN"), ("LEFT", "RIGHT"))
_DIRECTIONS = ("UP", "DOWN", "LEFT", "RIGHT")
#: Digit keys -> action indices (``"1"`` is action 0, ..., ``"0"`` is action 9).
DIGITS = {str((i + 1) % 10): i for i in range(10)}
#: Continuous actions: (negative key, positive key) for dimensions 0, 1, 2, ...
CONTINUOUS_KEYS: tuple[tuple[str, str], ...] = (
    ("left", "right"),
    ("down", "up"),
    ("a", "d"),
    ("s", "w"),
    ("j", "l"),
    ("k", "i"),
)

#: Action meanings of Gymnasium's discrete classic envs (by id prefix), in the arrows' vocabulary.
GYM_ACTION_MEANINGS: dict[str, tuple[str, ...]] = {
    "CartPole": ("LEFT", "RIGHT"),  # push the cart left / right
    "MountainCar": ("LEFT", "NOOP", "RIGHT"),  # accelerate left / not / right
    "Acrobot": ("LEFT", "NOOP", "RIGHT"),  # torque -1 / 0 / +1 on the joint
    "LunarLander": ("NOOP", "RIGHT", "UP", "LEFT"),  # left engine pushes right, main engine up, ...
}


class KeyMap(Protocol):
    """Turns the keys held down into one env action."""

    def action(self, held: Iterable[str]) -> Any:
        """The action for the keys ``held`` (pygame key names)."""
        ...

    def describe(self) -> list[str]:
        """Short help lines (``"up: UP"``) for the window."""
        ...


def parse_meaning(meaning: str) -> frozenset[str] | None:
    """``"UPRIGHTFIRE"`` -> ``{"UP", "RIGHT", "FIRE"}``; ``"NOOP"`` -> ``{}``; None for meanings that are
    not made of directions and ``FIRE`` (they are reachable by digit keys only)."""
    text = meaning.upper()
    if text == "NOOP":
        return frozenset()
    parts: set[str] = set()
    if text.endswith("FIRE"):
        parts.add("FIRE")
        text = text[: -len("FIRE")]
    while text:
        for direction in _DIRECTIONS:
            if text.startswith(direction):
                parts.add(direction)
                text = text[len(direction) :]
                break
        else:
            return None
    return frozenset(parts)


class DiscreteKeyMap:
    """Keys -> an index of ``Discrete(n, start)`` (see the module docstring for the rules).

    Args:
        n: number of actions.
        meanings: one meaning per action (``"NOOP"``, ``"UPFIRE"``, ...), or None (digit keys only).
        start: the action space's first index.
    """

    def __init__(self, n: int, meanings: Sequence[str] | None = None, start: int = 0) -> None:
        if meanings is not None and len(meanings) != n:
            raise ValueError(
                f"{len(meanings)} action meanings for {n} actions: give one meaning per action"
                " (e.g. the real env's get_action_meanings())"
            )
        self.n, self.start = int(n), int(start)
        self.meanings = list(meanings) if meanings is not None else None
        self.parts = [parse_meaning(m) for m in meanings] if meanings is not None else []
        empty = [i for i, p in enumerate(self.parts) if p == frozenset()]
        self.default = empty[0] if empty else 0

    def action(self, held: Iterable[str]) -> int:
        held = set(held)
        digits = sorted(DIGITS[k] for k in held if k in DIGITS and DIGITS[k] < self.n)
        if digits:
            return self.start + digits[0]
        wanted = {ARROWS[k] for k in held if k in ARROWS}
        for a, b in _OPPOSITE:
            if a in wanted and b in wanted:
                wanted -= {a, b}
        best, best_size = self.default, 0
        for index, parts in enumerate(self.parts):
            if parts is None or not parts <= wanted:
                continue
            if parts == wanted:
                return self.start + index
            if len(parts) > best_size:
                best, best_size = index, len(parts)
        return self.start + best

    def describe(self) -> list[str]:
        if self.meanings is None:
            last = min(self.n, 10)
            return [f"digit keys 1..{last % 10}: action 0..{last - 1} (no key: action 0)"]
        keys = {v: k for k, v in ARROWS.items()}
        lines = []
        for index, (meaning, parts) in enumerate(zip(self.meanings, self.parts, strict=True)):
            if parts is None:
                combo = f"key {(index + 1) % 10}" if index < 10 else "-"
            elif not parts:
                combo = "no key"
            else:
                order = ("UP", "DOWN", "LEFT", "RIGHT", "FIRE")
                combo = "+".join(keys[p] for p in sorted(parts, key=order.index))
            lines.append(f"{combo}: {meaning}")
        return lines


class ContinuousKeyMap:
    """Keys -> a float32 action of ``Box(low, high, (A,))`` (see the module docstring for the keys)."""

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        low = np.asarray(low, np.float64).reshape(-1)
        high = np.asarray(high, np.float64).reshape(-1)
        if low.shape != high.shape:
            raise ValueError(f"low {low.shape} and high {high.shape} of the action space differ in shape")
        self.low = np.where(np.isfinite(low), low, -1.0)
        self.high = np.where(np.isfinite(high), high, 1.0)
        self.rest = np.clip(np.zeros_like(self.low), self.low, self.high)

    @property
    def dims(self) -> int:
        return len(self.low)

    def action(self, held: Iterable[str]) -> np.ndarray:
        held = set(held)
        action = self.rest.copy()
        for dim, (negative, positive) in enumerate(CONTINUOUS_KEYS[: self.dims]):
            if positive in held and negative not in held:
                action[dim] = self.high[dim]
            elif negative in held and positive not in held:
                action[dim] = self.low[dim]
        return action.astype(np.float32)

    def describe(self) -> list[str]:
        lines = [
            f"{negative}/{positive}: dim {dim} to {self.low[dim]:g}/{self.high[dim]:g}"
            for dim, (negative, positive) in enumerate(CONTINUOUS_KEYS[: self.dims])
        ]
        if self.dims > len(CONTINUOUS_KEYS):
            lines.append(f"dims {len(CONTINUOUS_KEYS)}..{self.dims - 1}: no keys (held at rest)")
        return lines


def action_meanings(env: gym.Env | None, env_id: str = "") -> list[str] | None:
    """The meanings of a discrete env's actions: ale-py's ``get_action_meanings()`` where the env has it
    (Atari), else :data:`GYM_ACTION_MEANINGS` by the id (``"CartPole-v1"``), else None."""
    if env is not None:
        getter = getattr(env.unwrapped, "get_action_meanings", None)
        if callable(getter):
            return [str(m) for m in getter()]
    name = env_id.split("/")[-1]
    for prefix, meanings in GYM_ACTION_MEANINGS.items():
        if name.startswith(prefix) and not name.startswith("MountainCarContinuous"):
            return list(meanings)
    return None


def keymap_for(space: gym.Space, meanings: Sequence[str] | None = None) -> DiscreteKeyMap | ContinuousKeyMap:
    """The key map of an action space: ``Discrete`` (with the actions' ``meanings`` if known) or a
    one-dimensional ``Box``."""
    if isinstance(space, gym.spaces.Discrete):
        return DiscreteKeyMap(int(space.n), meanings, int(space.start))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return ContinuousKeyMap(space.low, space.high)
    raise ValueError(
        f"no keyboard mapping for the action space {space}: wmsim play drives Discrete or 1-D Box actions"
    )
