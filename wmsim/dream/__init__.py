"""Dream environments: a world-model bundle as a batched Gymnasium VectorEnv, a single Env, an SB3
VecEnv, and a real-env wrapper that produces the same latent features."""

from ..devices import resolve_device
from .env import DreamEnv
from .latent_wrapper import LatentObservation
from .simulator import DreamSimulator, StepResult
from .vector_env import DreamVectorEnv
from .video import write_dream_video

__all__ = [
    "DreamEnv",
    "DreamSimulator",
    "DreamVectorEnv",
    "LatentObservation",
    "StepResult",
    "resolve_device",
    "write_dream_video",
]
