"""The observation and action spaces wmsim world models take, their checks, and their JSON form.

Supported:

- observations: a 1-D ``Box`` (state vector ``(D,)``, served as ``float32``) or an image ``Box(0, 255,
  (H, W, C), uint8)`` with ``C`` 1 or 3 (channel axis last);
- actions: ``Discrete(n)`` (starting at 0) or a 1-D float ``Box`` ``(A,)`` (served as ``float32``).

The JSON form (:func:`space_to_dict`, :func:`space_from_dict`) is exact: ``low``/``high`` are a single
number when uniform, else nested lists; infinities are written as the strings ``"inf"`` / ``"-inf"``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

FIX_OBS = (
    "wmsim world models take a 1-D Box (state vector) or an HxWxC uint8 Box (image) with C = 1 or 3; "
    "wrap the env, e.g. with gymnasium.wrappers.FlattenObservation"
)
FIX_ACTION = (
    "wmsim world models take a Discrete(n) or a 1-D float Box action space; wrap the env with "
    "gymnasium.wrappers.TransformAction to map one of those onto its actions"
)


def is_image_space(space: gym.Space[Any]) -> bool:
    """True for ``Box(0, 255, (H, W, C), uint8)`` with ``C`` in {1, 3}."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 3
        and space.shape[-1] in (1, 3)
        and space.dtype == np.uint8
        and bool(np.all(space.low == 0))
        and bool(np.all(space.high == 255))
    )


def is_vector_space(space: gym.Space[Any]) -> bool:
    """True for a 1-D ``Box`` of a real or integer dtype."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and space.shape[0] > 0
        and (np.issubdtype(space.dtype, np.floating) or np.issubdtype(space.dtype, np.integer))
    )


def check_observation_space(space: gym.Space[Any], where: str = "") -> str:
    """Check that ``space`` is one wmsim can serve; returns ``"state"`` or ``"pixels"``.

    Raises ``ValueError`` naming the space and the fix otherwise."""
    if is_vector_space(space):
        return "state"
    if is_image_space(space):
        return "pixels"
    prefix = f"{where}: " if where else ""
    hint = ""
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 2:
        hint = (
            " (a 2-D Box: if it is a one-channel image add a channel axis with "
            "gymnasium.wrappers.ReshapeObservation, else flatten it)"
        )
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        hint = " (an image must be uint8 in [0, 255] with its 1 or 3 channels on the last axis)"
    raise ValueError(f"{prefix}observation space {space} is not supported{hint}: {FIX_OBS}")


def check_action_space(space: gym.Space[Any], where: str = "") -> str:
    """Check that ``space`` is one wmsim can serve; returns ``"discrete"`` or ``"continuous"``.

    Raises ``ValueError`` naming the space and the fix otherwise."""
    prefix = f"{where}: " if where else ""
    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(
                f"{prefix}action space {space} is not supported (it starts at {int(space.start)}): wmsim "
                "one-hot encodes Discrete(n) actions 0..n-1; shift the actions with "
                "gymnasium.wrappers.TransformAction"
            )
        return "discrete"
    if (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and space.shape[0] > 0
        and np.issubdtype(space.dtype, np.floating)
    ):
        return "continuous"
    raise ValueError(f"{prefix}action space {space} is not supported: {FIX_ACTION}")


# -- JSON form -------------------------------------------------------------------------------------------


def _encode_number(x: Any) -> Any:
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    value = float(x)
    if np.isnan(value):
        raise ValueError("a space bound is NaN: NaN bounds cannot be described")
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _encode_bounds(array: np.ndarray) -> Any:
    flat = array.reshape(-1)
    if flat.size > 0 and bool(np.all(flat == flat[0])):
        return _encode_number(flat[0])
    return _encode_nested(array.tolist())


def _encode_nested(value: Any) -> Any:
    if isinstance(value, list):
        return [_encode_nested(v) for v in value]
    return _encode_number(value)


def _decode_nested(value: Any, key: str) -> Any:
    if isinstance(value, list):
        return [_decode_nested(v, key) for v in value]
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"space key {key!r} holds {value!r}: bounds are numbers, 'inf' or '-inf'")
    return value


def space_to_dict(space: gym.Space[Any]) -> dict[str, Any]:
    """JSON description of a ``Discrete`` or ``Box`` space.

    ``Discrete``: ``{"type": "Discrete", "n", "start"}``; ``Box``: ``{"type": "Box", "shape", "dtype",
    "low", "high"}``. Other space types raise ``ValueError``."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _encode_bounds(space.low),
            "high": _encode_bounds(space.high),
        }
    raise ValueError(f"space {space} cannot be described: only Discrete and Box spaces are supported")


def space_from_dict(data: dict[str, Any]) -> gym.Space[Any]:
    """Inverse of :func:`space_to_dict` (the result equals the described space, dtype included)."""
    if not isinstance(data, dict) or "type" not in data:
        raise ValueError(f"not a space description (a dict with a 'type' key): {data!r}")
    kind = data["type"]
    try:
        if kind == "Discrete":
            return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
        if kind == "Box":
            shape = tuple(int(s) for s in data["shape"])
            dtype = np.dtype(data["dtype"])
            low = np.broadcast_to(np.asarray(_decode_nested(data["low"], "low"), dtype), shape)
            high = np.broadcast_to(np.asarray(_decode_nested(data["high"], "high"), dtype), shape)
            return gym.spaces.Box(low=low.copy(), high=high.copy(), shape=shape, dtype=dtype)
    except KeyError as exc:
        raise ValueError(f"{kind} space description {data!r} lacks the key {exc}") from exc
    except TypeError as exc:
        raise ValueError(f"bad {kind} space description {data!r}: {exc}") from exc
    raise ValueError(f"space type {kind!r} is not supported: only Discrete and Box spaces are described")


def describe_spaces(env: gym.Env[Any, Any]) -> dict[str, dict[str, Any]]:
    """``{"observation": ..., "action": ...}``: the JSON descriptions of an env's two spaces."""
    return {"observation": space_to_dict(env.observation_space), "action": space_to_dict(env.action_space)}
