"""wmsim: DreamerV2 discrete world models as Gymnasium environments, and the tools to train them.

``import wmsim`` registers the ``wmsim/<Name>-dream`` Gymnasium ids and imports nothing heavy: the
torch-based names below load on first use, so the onnxruntime dream backend works where torch is not
installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it (imported on first attribute access)
_LAZY = {
    "Bundle": "bundle",
    "BundleError": "bundle",
    "BundleTask": "bundle",
    "StartStates": "bundle",
    "load_bundle": "bundle",
    "save_bundle": "bundle",
    "DecoderConfig": "config",
    "EncoderConfig": "config",
    "HeadConfig": "config",
    "LossConfig": "config",
    "OptimConfig": "config",
    "RSSMConfig": "config",
    "WorldModelConfig": "config",
    "model_preset": "config",
    "DreamEnv": "dream",
    "DreamSimulator": "dream",
    "DreamVectorEnv": "dream",
    "LatentObservation": "dream",
    "write_dream_video": "dream",
    "EnvSpec": "envs",
    "make_env": "envs",
    "register_dream": "registry",
    "register_known_models": "registry",
    "RSSM": "rssm",
    "State": "rssm",
    "IOSpec": "world_model",
    "TaskIO": "world_model",
    "TaskSet": "world_model",
    "WorldModel": "world_model",
    "WorldModelTrainer": "world_model",
}

if TYPE_CHECKING:
    from .bundle import Bundle, BundleError, BundleTask, StartStates, load_bundle, save_bundle
    from .config import (
        DecoderConfig,
        EncoderConfig,
        HeadConfig,
        LossConfig,
        OptimConfig,
        RSSMConfig,
        WorldModelConfig,
        model_preset,
    )
    from .dream import DreamEnv, DreamSimulator, DreamVectorEnv, LatentObservation, write_dream_video
    from .envs import EnvSpec, make_env
    from .registry import register_dream, register_known_models
    from .rssm import RSSM, State
    from .world_model import IOSpec, TaskIO, TaskSet, WorldModel, WorldModelTrainer


_SUBMODULES = ("play",)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wmsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "RSSM",
    "Bundle",
    "BundleError",
    "BundleTask",
    "DecoderConfig",
    "DreamEnv",
    "DreamSimulator",
    "DreamVectorEnv",
    "EncoderConfig",
    "EnvSpec",
    "HeadConfig",
    "IOSpec",
    "LatentObservation",
    "LossConfig",
    "OptimConfig",
    "RSSMConfig",
    "StartStates",
    "State",
    "TaskIO",
    "TaskSet",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelTrainer",
    "__version__",
    "load_bundle",
    "make_env",
    "model_preset",
    "register_dream",
    "register_known_models",
    "save_bundle",
    "write_dream_video",
]

from .registry import register_known_models  # noqa: E402

register_known_models()
