"""wmsim: DreamerV2 discrete world models as Gymnasium environments, and the tools to train them."""

__version__ = "0.1.0"

from .bundle import Bundle, BundleError, StartStates, load_bundle, save_bundle
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
from .dream import DreamEnv, DreamVectorEnv, LatentObservation, write_dream_video
from .envs import EnvSpec, make_env
from .registry import register_dream, register_known_models
from .rssm import RSSM, State
from .world_model import IOSpec, WorldModel, WorldModelTrainer

__all__ = [
    "RSSM",
    "Bundle",
    "BundleError",
    "DecoderConfig",
    "DreamEnv",
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
    "WorldModel",
    "WorldModelConfig",
    "WorldModelTrainer",
    "__version__",
    "load_bundle",
    "make_env",
    "model_preset",
    "register_dream",
    "save_bundle",
    "write_dream_video",
]

register_known_models()
