"""Real environments for world models: Atari (ALE), DeepMind Control Suite and Gymnasium envs.

``make_env("atari/Pong")``, ``make_env("dmc/walker-walk")``, ``make_env("CartPole-v1")`` give standard
Gymnasium envs with ``uint8 (H, W, C)`` image or ``float32 (D,)`` vector observations and Dreamer's
``is_first`` / ``is_last`` / ``is_terminal`` flags in ``info``; :class:`EnvSpec` describes such an env in JSON
so that a saved model can rebuild it. Suite backends (ale-py, dm_control) are imported on first use.
"""

from .factory import make_env
from .spaces import (
    check_action_space,
    check_observation_space,
    describe_spaces,
    space_from_dict,
    space_to_dict,
)
from .spec import OBS_TYPES, SUITES, EnvSpec
from .wrappers import ActionRepeat, StepFlags, env_spec_of

__all__ = [
    "OBS_TYPES",
    "SUITES",
    "ActionRepeat",
    "EnvSpec",
    "StepFlags",
    "check_action_space",
    "check_observation_space",
    "describe_spaces",
    "env_spec_of",
    "make_env",
    "space_from_dict",
    "space_to_dict",
]
