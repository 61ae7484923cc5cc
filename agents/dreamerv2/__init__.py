"""DreamerV2's behaviour learning: actor-critic on imagined latent rollouts of a world model."""

from .agent import ActorCritic, agent_from_bundle, frozen, policy_for_bundle
from .config import AGENT_PRESETS, ActorCriticConfig, agent_preset
from .networks import Actor, Critic
from .policy import RealEnvPolicy, play_episodes
from .returns import lambda_returns

__all__ = [
    "AGENT_PRESETS",
    "Actor",
    "ActorCritic",
    "ActorCriticConfig",
    "Critic",
    "RealEnvPolicy",
    "agent_from_bundle",
    "agent_preset",
    "frozen",
    "lambda_returns",
    "play_episodes",
    "policy_for_bundle",
]
