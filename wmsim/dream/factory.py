"""Entry points of the registered ``wmsim/<Name>-dream`` ids: pick the backend, then build the env.

Backends: ``"torch"`` (:class:`~wmsim.dream.DreamVectorEnv`) and ``"onnxruntime"``
(:class:`~wmsim.dream.ort_env.OrtDreamVectorEnv`: the bundle's exported ONNX graphs, no torch needed).
This module imports neither torch nor onnxruntime; the chosen backend is imported when an env is made.
"""

from __future__ import annotations

from typing import Any

BACKENDS = ("torch", "onnxruntime")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {BACKENDS}")


def make_dream_env(model: Any, backend: str = "torch", **kwargs: Any) -> Any:
    """One dream as a ``gymnasium.Env`` (``gym.make("wmsim/<Name>-dream")``)."""
    _check_backend(backend)
    if backend == "onnxruntime":
        from .ort_env import OrtDreamEnv

        return OrtDreamEnv(model, **kwargs)
    from .env import DreamEnv

    return DreamEnv(model, **kwargs)


def make_dream_vector_env(model: Any, num_envs: int = 1, backend: str = "torch", **kwargs: Any) -> Any:
    """A batch of dreams as a native ``gymnasium.vector.VectorEnv`` (``gym.make_vec``)."""
    _check_backend(backend)
    if backend == "onnxruntime":
        from .ort_env import OrtDreamVectorEnv

        return OrtDreamVectorEnv(model, num_envs=num_envs, **kwargs)
    from .vector_env import DreamVectorEnv

    return DreamVectorEnv(model, num_envs=num_envs, **kwargs)
