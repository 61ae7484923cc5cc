"""Dream environments: a world-model bundle as a batched Gymnasium VectorEnv, a single Env, an SB3
VecEnv, and a real-env wrapper that produces the same latent features; each exists once, over a
torch backend and an onnxruntime backend (:mod:`wmsim.dream.backend`).

Names load on first use, so that the torch-free onnxruntime backend can live in this package."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "DreamBackend": "backend",
    "StepResult": "backend",
    "DreamEnv": "env",
    "DreamSimulator": "simulator",
    "DreamVectorEnv": "vector_env",
    "LatentObservation": "latent_wrapper",
    "write_dream_video": "video",
}

if TYPE_CHECKING:
    from .backend import DreamBackend, StepResult
    from .env import DreamEnv
    from .latent_wrapper import LatentObservation
    from .simulator import DreamSimulator
    from .vector_env import DreamVectorEnv
    from .video import write_dream_video


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wmsim.dream' has no attribute {name!r}")


__all__ = [
    "DreamBackend",
    "DreamEnv",
    "DreamSimulator",
    "DreamVectorEnv",
    "LatentObservation",
    "StepResult",
    "write_dream_video",
]
