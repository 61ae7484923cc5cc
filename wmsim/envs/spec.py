"""``EnvSpec``: a complete, JSON-serialisable description of a real environment.

A saved world model keeps the ``EnvSpec`` of the env it was trained on, so that the very same env
(suite, game or task, observation type, image size, action repeat, sticky actions, no-ops, time limit,
camera, extra ``gymnasium.make`` keyword arguments) can be rebuilt later with :func:`wmsim.envs.make_env`.

Ids understood by :meth:`EnvSpec.from_id`:

- ``"atari/<Game>"``, e.g. ``"atari/Pong"``: ALE v5 game with the DreamerV2 Atari protocol;
- ``"dmc/<domain>-<task>"``, e.g. ``"dmc/cartpole-swingup"``, ``"dmc/ball_in_cup-catch"``: DeepMind
  Control Suite task with the DreamerV2 DMC protocol;
- ``"gym/<id>"`` or a bare registered Gymnasium id, e.g. ``"CartPole-v1"``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

SUITES = ("atari", "dmc", "gym")
OBS_TYPES = ("pixels", "state")

# DreamerV2 protocol constants.
ATARI_EPISODE_FRAMES = 108_000  # 30 minutes of play at 60 Hz
DMC_EPISODE_CONTROL_STEPS = 1_000  # every suite task runs 1000 control steps per episode
DMC_CAMERAS = {"quadruped": 2}  # camera id per domain; 0 for all others

ID_HELP = "use atari/<Game>, dmc/<domain>-<task> or a registered Gymnasium id such as CartPole-v1"


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class EnvSpec:
    """Everything needed to rebuild a real env exactly.

    Attributes:
        suite: ``"atari"``, ``"dmc"`` or ``"gym"``.
        name: atari: the ALE game name (``"Pong"``, ``"MsPacman"``); dmc: ``"<domain>-<task>"``
            (``"walker-walk"``); gym: a registered Gymnasium id (``"CartPole-v1"``).
        obs_type: ``"pixels"`` (``uint8`` images ``(H, W, C)``) or ``"state"`` (``float32`` vectors ``(D,)``).
        size: image size ``(H, W)`` in pixels; ignored for state observations.
        grayscale: one luminance channel (``C = 1``) instead of RGB (``C = 3``); pixels only.
        action_repeat: raw env steps (Atari: frames) per agent step; rewards are summed over them.
        sticky_actions: probability that a raw step repeats the previous action instead (ALE stickiness).
        noop_max: Atari only: up to this many no-op frames after each reset (uniform in 1..noop_max).
        life_loss_terminal: Atari only: losing a life ends the episode as terminal.
        time_limit: episode length limit in agent steps (after action repeat); ``None`` for no limit.
            Episodes cut by it are truncated, not terminal.
        camera: dmc only: the MuJoCo camera id that renders the pixel observations.
        kwargs: extra keyword arguments for the env constructor (``gymnasium.make`` for atari and gym, the
            dm_control task function for dmc); JSON values only (lists, not tuples).
    """

    suite: str
    name: str
    obs_type: str = "pixels"
    size: tuple[int, int] = (64, 64)
    grayscale: bool = False
    action_repeat: int = 1
    sticky_actions: float = 0.0
    noop_max: int = 0
    life_loss_terminal: bool = False
    time_limit: int | None = None
    camera: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    FIELD_TYPES: ClassVar[dict[str, str]] = {
        "suite": "str",
        "name": "str",
        "obs_type": "str",
        "size": "[int, int]",
        "grayscale": "bool",
        "action_repeat": "int",
        "sticky_actions": "float",
        "noop_max": "int",
        "life_loss_terminal": "bool",
        "time_limit": "int or null",
        "camera": "int or null",
        "kwargs": "dict",
    }

    def __post_init__(self) -> None:
        self._check_types()
        self._check_values()

    def __hash__(self) -> int:  # the dict field would make the generated hash fail
        return hash(self.to_json(sort_keys=True))

    # -- validation ---------------------------------------------------------------------------------------
    def _bad(self, key: str, value: Any, expected: str) -> ValueError:
        return ValueError(f"EnvSpec field {key!r} must be {expected}, got {value!r} ({_type_name(value)})")

    def _check_types(self) -> None:
        for key in ("suite", "name", "obs_type"):
            if not isinstance(getattr(self, key), str):
                raise self._bad(key, getattr(self, key), "a str")
        size = self.size
        if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(s) for s in size)):
            raise self._bad("size", size, "a pair of ints (height, width)")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        for key in ("grayscale", "life_loss_terminal"):
            if not isinstance(getattr(self, key), bool):
                raise self._bad(key, getattr(self, key), "a bool")
        for key in ("action_repeat", "noop_max"):
            if not _is_int(getattr(self, key)):
                raise self._bad(key, getattr(self, key), "an int")
        sticky = self.sticky_actions
        if isinstance(sticky, bool) or not isinstance(sticky, (int, float)):
            raise self._bad("sticky_actions", sticky, "a float")
        object.__setattr__(self, "sticky_actions", float(sticky))
        for key in ("time_limit", "camera"):
            value = getattr(self, key)
            if value is not None and not _is_int(value):
                raise self._bad(key, value, "an int or None")
        if not isinstance(self.kwargs, dict) or not all(isinstance(k, str) for k in self.kwargs):
            raise self._bad("kwargs", self.kwargs, "a dict with str keys")
        try:
            text = json.dumps(self.kwargs, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"EnvSpec field 'kwargs' must hold JSON values only (str, int, float, bool, None, lists, "
                f"dicts), got {self.kwargs!r}: {exc}"
            ) from exc
        if json.loads(text) != self.kwargs:
            raise ValueError(
                f"EnvSpec field 'kwargs' must survive a JSON round trip unchanged, got {self.kwargs!r}: "
                "use lists instead of tuples"
            )
        # A private deep copy, so that mutating the caller's dict cannot change a frozen spec.
        object.__setattr__(self, "kwargs", json.loads(text))

    def _check_values(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"EnvSpec suite {self.suite!r} is unknown: use one of {', '.join(SUITES)}")
        if not self.name:
            raise ValueError("EnvSpec name is empty: give a game, a domain-task or a Gymnasium id")
        if self.obs_type not in OBS_TYPES:
            raise ValueError(
                f"EnvSpec obs_type {self.obs_type!r} is unknown: use one of {', '.join(OBS_TYPES)}"
            )
        if min(self.size) < 1:
            raise ValueError(f"EnvSpec size {self.size} must be positive (height, width)")
        if self.action_repeat < 1:
            raise ValueError(f"EnvSpec action_repeat {self.action_repeat} must be >= 1")
        if not 0.0 <= self.sticky_actions <= 1.0:
            raise ValueError(f"EnvSpec sticky_actions {self.sticky_actions} must be a probability in [0, 1]")
        if self.noop_max < 0:
            raise ValueError(f"EnvSpec noop_max {self.noop_max} must be >= 0")
        if self.time_limit is not None and self.time_limit < 1:
            raise ValueError(
                f"EnvSpec time_limit {self.time_limit} must be >= 1 agent step, or None for no limit"
            )
        if self.camera is not None and self.camera < -1:
            raise ValueError(
                f"EnvSpec camera {self.camera} must be a camera id >= -1 (-1: MuJoCo free camera)"
            )
        if self.suite == "atari" and self.obs_type != "pixels":
            raise ValueError(
                f"EnvSpec {self.id}: Atari games have pixel observations only: use obs_type='pixels'"
            )
        if self.suite != "atari" and self.noop_max != 0:
            raise ValueError(f"EnvSpec {self.id}: noop_max is for Atari games only: use noop_max=0")
        if self.suite != "atari" and self.life_loss_terminal:
            raise ValueError(f"EnvSpec {self.id}: life_loss_terminal is for Atari games only: use False")
        if self.suite != "dmc" and self.camera is not None:
            raise ValueError(f"EnvSpec {self.id}: camera is for dmc tasks only: use camera=None")
        if self.suite == "dmc" and self.obs_type == "pixels" and self.camera is None:
            raise ValueError(f"EnvSpec {self.id}: dmc pixel observations need a camera id, e.g. camera=0")

    # -- ids ----------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The canonical id, ``"<suite>/<name>"`` (e.g. ``"atari/Pong"``, ``"gym/CartPole-v1"``)."""
        return f"{self.suite}/{self.name}"

    @classmethod
    def override_names(cls) -> tuple[str, ...]:
        """Fields that :meth:`from_id` and :meth:`replace` accept as overrides (all but suite and name)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("suite", "name"))

    @classmethod
    def _check_overrides(cls, overrides: dict[str, Any]) -> None:
        unknown = sorted(set(overrides) - set(cls.override_names()))
        if unknown:
            raise ValueError(
                f"unknown EnvSpec override(s) {', '.join(unknown)}: valid ones are "
                f"{', '.join(cls.override_names())} (suite and name come from the id)"
            )

    def replace(self, **overrides: Any) -> EnvSpec:
        """A copy with some fields replaced; the names are checked like in :meth:`from_id`."""
        self._check_overrides(overrides)
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_id(cls, env_id: str, **overrides: Any) -> EnvSpec:
        """Parse an id into a spec with the suite's defaults, then apply ``overrides``.

        Defaults (DreamerV2):

        - atari: pixels, 64x64, grayscale, action_repeat 4, sticky_actions 0.25, noop_max 30, no terminal on
          life loss, time_limit 108000 frames / action_repeat = 27000 agent steps;
        - dmc: pixels, 64x64 RGB, action_repeat 2, time_limit 1000 control steps / action_repeat = 500,
          camera 0 (quadruped: 2);
        - gym: action_repeat 1, obs_type ``"state"`` for a 1-D Box observation space else ``"pixels"``,
          time_limit the registered ``max_episode_steps`` / action_repeat (None if unset).

        If ``action_repeat`` is overridden but ``time_limit`` is not, the default time limit keeps the same
        episode length in raw steps (frames, control steps).
        """
        if not isinstance(env_id, str):
            raise ValueError(f"env id must be a str, got {env_id!r}: {ID_HELP}")
        cls._check_overrides(overrides)
        prefix, sep, rest = env_id.strip().partition("/")
        if sep and prefix in SUITES:
            suite, name = prefix, rest.strip()
        else:
            suite, name = "gym", env_id.strip()
        if not name:
            raise ValueError(f"malformed environment id {env_id!r}: {ID_HELP}")
        repeat = overrides.get("action_repeat")
        fields: dict[str, Any]
        if suite == "atari":
            from .atari import resolve_game

            repeat = 4 if repeat is None else repeat
            fields = {
                "name": resolve_game(name),
                "obs_type": "pixels",
                "grayscale": True,
                "action_repeat": 4,
                "sticky_actions": 0.25,
                "noop_max": 30,
                "life_loss_terminal": False,
                "time_limit": max(1, ATARI_EPISODE_FRAMES // repeat) if _is_int(repeat) else None,
            }
        elif suite == "dmc":
            from .dmc import resolve_task

            domain, task = resolve_task(name, env_id)
            repeat = 2 if repeat is None else repeat
            fields = {
                "name": f"{domain}-{task}",
                "obs_type": "pixels",
                "grayscale": False,
                "action_repeat": 2,
                "time_limit": max(1, DMC_EPISODE_CONTROL_STEPS // repeat) if _is_int(repeat) else None,
                "camera": DMC_CAMERAS.get(domain, 0),
            }
        else:
            from .gym import probe_gym_env

            repeat = 1 if repeat is None else repeat
            probe = probe_gym_env(
                name, overrides.get("kwargs", {}), need_obs_type="obs_type" not in overrides
            )
            steps = probe.max_episode_steps
            fields = {
                "name": probe.env_id,
                "obs_type": probe.obs_type or "state",
                "grayscale": False,
                "action_repeat": 1,
                "time_limit": max(1, steps // repeat) if steps is not None and _is_int(repeat) else None,
            }
        fields.update(overrides)
        return cls(suite=suite, **fields)

    # -- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of all fields (``size`` as a list)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["size"] = list(self.size)
        out["kwargs"] = json.loads(json.dumps(self.kwargs))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSpec:
        """Inverse of :meth:`to_dict`; every field must be present, unknown keys and wrong types raise
        ``ValueError`` naming the key."""
        if not isinstance(data, dict):
            raise ValueError(f"an EnvSpec dict must be a dict, got {_type_name(data)}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(
                f"unknown EnvSpec key(s) {', '.join(map(repr, unknown))}: valid keys are {', '.join(names)}"
            )
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"EnvSpec dict is missing key(s) {', '.join(map(repr, missing))}")
        values = dict(data)
        if not isinstance(values["size"], (list, tuple)):
            raise ValueError(
                f"EnvSpec field 'size' must be a pair of ints (height, width), got {values['size']!r}"
            )
        values["size"] = tuple(values["size"])
        return cls(**values)

    def to_json(self, **dumps_kwargs: Any) -> str:
        """The spec as a JSON object string (``json.dumps`` keyword arguments pass through)."""
        return json.dumps(self.to_dict(), allow_nan=False, **dumps_kwargs)

    @classmethod
    def from_json(cls, text: str) -> EnvSpec:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not an EnvSpec JSON object: {exc}") from exc
        return cls.from_dict(data)
