"""Resolve a model argument (a loaded bundle, a bundle directory or a known short name) to a
:class:`~wmsim.bundle.Bundle`, and register ``wmsim/<Name>-dream`` Gymnasium ids.

Known short names map to bundle sources; the pretrained models that fill this table (with Hub repos and
pinned revisions) arrive in a later release, and :func:`register_dream` adds a user's own bundle.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .bundle import Bundle, load_bundle

log = logging.getLogger(__name__)

#: Short name -> bundle directory. Filled by :func:`register_dream` and by pretrained models.
KNOWN_MODELS: dict[str, str] = {}

# Bundles handed over as objects are kept here under a token, because Gymnasium deep-copies the
# kwargs of a registered id and a model must not be copied per env.
_OBJECTS: dict[str, Bundle] = {}
_CACHE: dict[tuple[str, float], Bundle] = {}
_LOCK = threading.Lock()


def resolve_model(model: Bundle | str | os.PathLike) -> Bundle:
    """The bundle that ``model`` names: a :class:`Bundle` (returned as is), a bundle directory, or a
    short name known to the registry (``wmsim.registry.KNOWN_MODELS``). Loaded bundles are cached per
    directory and modification time."""
    if isinstance(model, Bundle):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a Bundle, a bundle directory or a model name, got {type(model).__name__}"
        )
    key = os.fspath(model)
    if key in _OBJECTS:
        return _OBJECTS[key]
    path = Path(key)
    if not path.exists() and key in KNOWN_MODELS:
        log.debug("model %r: known name -> %s", key, KNOWN_MODELS[key])
        path = Path(KNOWN_MODELS[key])
    if not path.exists():
        known = ", ".join(sorted(KNOWN_MODELS)) or "none registered yet"
        raise ValueError(
            f"unknown model {key!r}: pass a bundle directory (one holding config.json, e.g. runs/x/bundle),"
            f" a loaded wmsim.Bundle, or a known model name ({known})"
        )
    config = path / "config.json"
    stamp = config.stat().st_mtime if config.exists() else 0.0
    with _LOCK:
        cache_key = (str(path.resolve()), stamp)
        if cache_key not in _CACHE:
            log.debug("model %r: loading bundle %s", key, path)
            _CACHE[cache_key] = load_bundle(path)
        return _CACHE[cache_key]


def register_dream(name: str, model: Bundle | str | os.PathLike, **defaults: object) -> str:
    """Register ``wmsim/<name>-dream`` for ``gym.make`` (single env) and ``gym.make_vec`` (the native
    batched :class:`~wmsim.dream.DreamVectorEnv`). ``defaults`` become the id's default keyword
    arguments (``device``, ``obs_mode``, ``time_limit``, ...). Returns the id.

    Example::

        wmsim.register_dream("MyCartPole", "runs/cartpole/bundle")
        env = gym.make_vec("wmsim/MyCartPole-dream", num_envs=256)
    """
    import gymnasium as gym

    if not name or "/" in name or name.endswith("-dream"):
        raise ValueError(f"dream name {name!r}: use a plain name such as 'Pong' (the id adds '-dream')")
    if isinstance(model, Bundle):
        token = f"<bundle:{name}>"
        _OBJECTS[token] = model
        reference = token
    else:
        reference = os.fspath(model)
        KNOWN_MODELS.setdefault(name, reference)
    env_id = f"wmsim/{name}-dream"
    gym.register(
        id=env_id,
        entry_point="wmsim.dream.env:DreamEnv",
        vector_entry_point="wmsim.dream.vector_env:DreamVectorEnv",
        kwargs={"model": reference, **defaults},
        disable_env_checker=True,
        order_enforce=True,
    )
    return env_id


def register_known_models() -> None:
    """Register ``wmsim/<Name>-dream`` for every name in :data:`KNOWN_MODELS` (run on ``import wmsim``)."""
    for name, source in KNOWN_MODELS.items():
        register_dream(name, source)
