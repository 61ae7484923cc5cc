"""Find a world model by name, Hub repo id or path, and register ``wmsim/<Name>-dream`` Gymnasium ids.

A model argument resolves to a bundle directory in this order, each step said in a debug log
(``logging.getLogger("wmsim.registry")``):

1. an explicit local path (a directory holding ``config.json``);
2. a name given to :func:`register_dream` with a directory;
3. for a pretrained name (``Pong``, ``CartPole``, ...: :data:`PRETRAINED`) or a Hub repo id
   (``owner/name``, optionally ``owner/name@revision``): the Hugging Face Hub cache, then the Hub
   (skipped when ``HF_HUB_OFFLINE=1``), then, for a pretrained name, the copy shipped with the package.

Nothing here imports torch: the onnxruntime backend resolves models through the same functions.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bundle import Bundle

log = logging.getLogger(__name__)

#: Where the copies of pretrained models shipped with the package live (one folder per name).
SHIPPED_DIR = Path(__file__).parent / "pretrained"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class PretrainedModel:
    """A published world model: its short name, Hub repo and pinned revision, and the real env."""

    name: str
    repo_id: str
    revision: str
    env_id: str
    summary: str

    @property
    def shipped_dir(self) -> Path | None:
        """The copy shipped with the package, or None where none is."""
        path = SHIPPED_DIR / self.name
        return path if (path / "config.json").is_file() else None


#: Pretrained models by short name. Each is published as ``repo_id`` and tagged ``revision``; the same
#: bundle ships with the package (``wmsim/pretrained/<name>``), so the ids work offline.
PRETRAINED: dict[str, PretrainedModel] = {
    entry.name: entry
    for entry in (
        PretrainedModel(
            "CartPole",
            "wmsim/cartpole-v1-dreamerv2",
            "v0.1.0",
            "CartPole-v1",
            "CartPole-v1 from states; small preset; DreamerV2 policy trained in the dream",
        ),
        PretrainedModel(
            "Pendulum",
            "wmsim/pendulum-v1-dreamerv2",
            "v0.1.0",
            "Pendulum-v1",
            "Pendulum-v1 from states; small preset; DreamerV2 policy trained in the dream",
        ),
        PretrainedModel(
            "Pong",
            "wmsim/pong-dreamerv2",
            "v0.2.0",
            "atari/Pong",
            "ALE Pong, 64x64 grayscale (DreamerV2 protocol); offline scripted+random data, points"
            " weighted, mid-game starts",
        ),
        PretrainedModel(
            "CartpoleSwingup",
            "wmsim/dmc-cartpole-swingup-dreamerv2",
            "v0.1.0",
            "dmc/cartpole-swingup",
            "dm_control cartpole-swingup from states; offline scripted+random data",
        ),
        PretrainedModel(
            "DMCMultiTask",
            "wmsim/dmc-multitask-states-dreamerv2",
            "v0.1.0",
            "dmc: 10 tasks",
            "one model of 10 dm_control tasks from states (task=...); offline random and scripted data",
        ),
    )
    if (SHIPPED_DIR / entry.name / "config.json").is_file()
}

#: Names registered by :func:`register_dream` with a bundle directory.
KNOWN_MODELS: dict[str, str] = {}

# Bundles handed over as objects are kept here under a token, because Gymnasium deep-copies the
# kwargs of a registered id and a model must not be copied per env.
_OBJECTS: dict[str, Bundle] = {}
_CACHE: dict[tuple[str, float], Bundle] = {}
_LOCK = threading.Lock()


class UnknownModelError(ValueError):
    """A model argument is neither a bundle directory, a known name nor a Hub repo id."""


def _is_bundle(model: object) -> bool:
    bundle_module = sys.modules.get("wmsim.bundle")
    return bundle_module is not None and isinstance(model, bundle_module.Bundle)


def split_revision(reference: str) -> tuple[str, str | None]:
    """``"owner/name@rev"`` -> ``("owner/name", "rev")``; no ``@`` -> ``(reference, None)``."""
    if "@" in reference:
        repo, revision = reference.rsplit("@", 1)
        return repo, revision or None
    return reference, None


def known_names() -> list[str]:
    return sorted(set(PRETRAINED) | set(KNOWN_MODELS))


NO_MODEL = (
    'no model given: gym.make("wmsim/Dream", model=...) takes a bundle directory, a Hub repo id'
    ' ("owner/name") or a pretrained name; or use a named id such as "wmsim/CartPole-dream"'
)


def resolve_model_dir(
    model: Bundle | str | os.PathLike,
    revision: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """The bundle directory that ``model`` names (see the module docstring for the order).

    Args:
        model: a bundle directory, a registered or pretrained name, a Hub repo id (``owner/name`` or
            ``owner/name@revision``), or a loaded :class:`~wmsim.Bundle` saved in a directory.
        revision: a Hub revision (branch, tag or commit) overriding the pinned or given one.
        cache_dir, token, local_files_only, force_download: passed to the Hub client for repos
            (``huggingface_hub``'s meanings).

    Raises:
        UnknownModelError: ``model`` is none of the above.
        hub.HubError: the model is on the Hub but cannot be had (offline and not cached, unknown
            revision, refused files); the message says what to do.
    """
    if model is None:
        raise ValueError(NO_MODEL)
    if _is_bundle(model):
        if model.path is None:  # type: ignore[union-attr]
            raise ValueError(
                "this wmsim.Bundle was never saved, so it has no directory: save it with"
                " bundle.save_pretrained(DIR) and pass DIR"
            )
        return Path(model.path)  # type: ignore[union-attr]
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a Bundle, a bundle directory, a model name or a Hub repo id,"
            f" got {type(model).__name__}"
        )
    key = os.fspath(model)
    if key in _OBJECTS:
        return resolve_model_dir(_OBJECTS[key])
    path = Path(key).expanduser()
    if path.exists():
        log.debug("model %r: explicit local path %s", key, path)
        return path
    if key in KNOWN_MODELS:
        log.debug("model %r: registered directory %s", key, KNOWN_MODELS[key])
        return Path(KNOWN_MODELS[key])
    repo_id, given_revision = split_revision(key)
    entry = PRETRAINED.get(repo_id)
    if entry is not None:
        repo_id, pinned = entry.repo_id, entry.revision
        log.debug("model %r: pretrained model %s@%s", key, repo_id, pinned)
    elif _REPO_ID.match(repo_id):
        pinned = None
    else:
        raise UnknownModelError(_unknown_message(key))
    rev = revision or given_revision or pinned
    options = {"cache_dir": cache_dir, "token": token, "force_download": force_download}
    return _from_hub(key, repo_id, rev, entry, local_files_only, options)


def _from_hub(
    key: str,
    repo_id: str,
    revision: str | None,
    entry: PretrainedModel | None,
    local_files_only: bool,
    options: dict[str, Any],
) -> Path:
    import hub

    if not options["force_download"]:
        try:
            found = hub.download_bundle(
                repo_id, revision, local_files_only=True, cache_dir=options["cache_dir"]
            )
            log.debug("model %r: found %s@%s in the Hub cache: %s", key, repo_id, revision or "main", found)
            return found
        except hub.NotCachedError:
            log.debug("model %r: %s@%s is not in the Hub cache", key, repo_id, revision or "main")
    error: Exception | None = None
    if hub.is_offline():
        log.debug("model %r: the Hub is offline (HF_HUB_OFFLINE), not asking it", key)
    elif local_files_only:
        log.debug("model %r: local_files_only, not asking the Hub", key)
    else:
        try:
            found = hub.download_bundle(repo_id, revision, **options)
            log.debug("model %r: downloaded %s@%s from the Hub: %s", key, repo_id, revision or "main", found)
            return found
        except hub.HubError as exc:
            log.debug("model %r: the Hub did not give %s: %s", key, repo_id, exc)
            error = exc
    if entry is not None and entry.shipped_dir is not None:
        log.debug("model %r: using the copy shipped with wmsim: %s", key, entry.shipped_dir)
        return entry.shipped_dir
    if error is not None:
        raise error
    why = "local_files_only is set" if local_files_only and not hub.is_offline() else "HF_HUB_OFFLINE is set"
    raise hub.NotCachedError(
        f"model {key!r} ({repo_id}@{revision or 'main'}) is not in the Hub cache and the Hub is not asked"
        f" ({why}): run `wmsim pull {_pull_argument(key, revision, entry)}` where there is network, or unset"
        " HF_HUB_OFFLINE,"
        " or pass a local bundle directory"
    )


def _pull_argument(key: str, revision: str | None, entry: PretrainedModel | None) -> str:
    """What to pass to ``wmsim pull`` for ``key`` at ``revision``: the revision is kept unless it is the
    one ``wmsim pull`` picks anyway (a pretrained name's pinned revision)."""
    name, given = split_revision(key)
    if revision is None or given == revision or (entry is not None and revision == entry.revision):
        return key
    return f"{name}@{revision}"


def _unknown_message(key: str) -> str:
    names = ", ".join(known_names()) or "none registered"
    return (
        f"unknown model {key!r}: pass a bundle directory (one holding config.json, e.g. runs/x/bundle),"
        f" a loaded wmsim.Bundle, a Hub repo id such as 'owner/name' (optionally '@revision'), or a"
        f" known model name ({names}); `wmsim models` lists them"
    )


def resolve_model(model: Bundle | str | os.PathLike, revision: str | None = None) -> Bundle:
    """The loaded bundle that ``model`` names: a :class:`~wmsim.Bundle` (returned as is), or anything
    :func:`resolve_model_dir` accepts. Loaded bundles are cached per directory and modification time."""
    if _is_bundle(model):
        return model  # type: ignore[return-value]
    if model is None:
        raise ValueError(NO_MODEL)
    if isinstance(model, (str, os.PathLike)) and os.fspath(model) in _OBJECTS:
        return _OBJECTS[os.fspath(model)]
    path = resolve_model_dir(model, revision)
    from .bundle import load_bundle

    config = path / "config.json"
    stamp = config.stat().st_mtime if config.exists() else 0.0
    with _LOCK:
        cache_key = (str(path.resolve()), stamp)
        if cache_key not in _CACHE:
            log.debug("model %r: loading bundle %s", model, path)
            _CACHE[cache_key] = load_bundle(path)
        return _CACHE[cache_key]


def register_dream(name: str, model: Bundle | str | os.PathLike, **defaults: object) -> str:
    """Register ``wmsim/<name>-dream`` for ``gym.make`` (single env) and ``gym.make_vec`` (the native
    batched vector env). ``model``: a bundle, a bundle directory, a pretrained name or a Hub repo id;
    ``defaults`` become the id's default keyword arguments (``device``, ``obs_mode``, ``time_limit``,
    ``backend``, ...). Returns the id.

    Example::

        wmsim.register_dream("MyCartPole", "runs/cartpole/bundle")
        env = gym.make_vec("wmsim/MyCartPole-dream", num_envs=256)
    """

    if not name or "/" in name or name.endswith("-dream"):
        raise ValueError(f"dream name {name!r}: use a plain name such as 'Pong' (the id adds '-dream')")
    if _is_bundle(model):
        token = f"<bundle:{name}>"
        _OBJECTS[token] = model  # type: ignore[assignment]
        reference: str = token
    else:
        reference = os.fspath(model)  # type: ignore[arg-type]
        if Path(reference).exists():
            KNOWN_MODELS[name] = reference
    env_id = f"wmsim/{name}-dream"
    _register(env_id, {"model": reference, **defaults})
    return env_id


def _register(env_id: str, kwargs: dict[str, object]) -> None:
    import gymnasium as gym

    existing = gym.registry.get(env_id)
    if existing is not None and existing.kwargs == kwargs:
        return
    gym.register(
        id=env_id,
        entry_point="wmsim.dream.env:DreamEnv",
        vector_entry_point="wmsim.dream.vector_env:DreamVectorEnv",
        kwargs=kwargs,
        disable_env_checker=True,
        order_enforce=True,
    )


#: The generic id: ``gym.make("wmsim/Dream", model="owner/name")`` (any model argument).
GENERIC_ID = "wmsim/Dream"


def register_known_models() -> None:
    """Register the generic ``wmsim/Dream`` id and ``wmsim/<Name>-dream`` for every pretrained and
    registered name (run on ``import wmsim``)."""
    _register(GENERIC_ID, {"model": None})
    for name in PRETRAINED:
        register_dream(name, name)
    for name, source in KNOWN_MODELS.items():
        register_dream(name, source)
