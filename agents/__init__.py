"""agents: learning on top of wmsim — sequence replay, DreamerV2 world-model training, first-order
policy learning through world models (PWM), benchmarks.

The ``wmsim`` command line lives here (``agents.cli``) because it reaches every layer.
"""

from .config import TRAIN_PRESETS, TrainConfig, train_preset
from .pwm import PWM_PRESETS, PWMConfig, PWMLearner, pwm_preset, train_pwm
from .replay import Replay
from .train import Trainer, TrainResult, evaluate_model, train

__all__ = [
    "PWM_PRESETS",
    "TRAIN_PRESETS",
    "PWMConfig",
    "PWMLearner",
    "Replay",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate_model",
    "pwm_preset",
    "train",
    "train_preset",
    "train_pwm",
]
