"""agents: learning on top of wmsim — sequence replay, DreamerV2 world-model training, benchmarks.

The ``wmsim`` command line lives here (``agents.cli``) because it reaches every layer.
"""

from .config import TRAIN_PRESETS, TrainConfig, train_preset
from .replay import Replay
from .train import Trainer, TrainResult, evaluate_model, train

__all__ = [
    "TRAIN_PRESETS",
    "Replay",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate_model",
    "train",
    "train_preset",
]
