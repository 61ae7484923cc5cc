"""Actor-critic configuration of DreamerV2 (behaviour learning in imagination), with the paper's
values as presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from wmsim.config import check_choice

ACTOR_GRADS = ("auto", "reinforce", "dynamics", "both")
ACTOR_DISTS = ("auto", "onehot", "trunc_normal", "tanh_normal")


@dataclass(frozen=True)
class ActorCriticConfig:
    """DreamerV2's actor and critic (section 2.2 and the official configuration).

    ``actor_grad="auto"`` picks REINFORCE for discrete actions and dynamics backpropagation for
    continuous ones; ``"both"`` mixes them as the official code does:
    ``actor_grad_mix * dynamics + (1 - actor_grad_mix) * reinforce``. ``actor_dist="auto"`` is the
    official one-hot categorical (discrete) or truncated normal (continuous); see
    :class:`~agents.dreamerv2.networks.Actor`. ``imag_starts`` (not in the paper, which imagines
    from all ``B * T`` posterior states of the world-model batch: ``0``) imagines from that many of
    them, drawn at random, to cut the actor-critic's arithmetic on a CPU. ``discount`` (not in the
    paper, where one ``gamma`` serves both) is the behaviour learner's ``gamma``, applied to the
    world model's continue probability; ``0`` uses the world model's own discount.
    """

    horizon: int = 15
    imag_starts: int = 0
    lambda_: float = 0.95
    actor_layers: int = 4
    actor_units: int = 400
    critic_layers: int = 4
    critic_units: int = 400
    actor_lr: float = 4e-5
    critic_lr: float = 1e-4
    eps: float = 1e-5
    clip: float = 100.0
    weight_decay: float = 1e-6
    actor_grad: str = "auto"
    actor_grad_mix: float = 0.1
    actor_entropy: float = 1e-3
    actor_dist: str = "auto"
    min_std: float = 0.1
    slow_target_update: int = 100
    slow_target_fraction: float = 1.0
    discount: float = 0.0

    def __post_init__(self) -> None:
        if not (self.discount == 0.0 or 0.0 < self.discount <= 1.0):
            raise ValueError(f"discount={self.discount}: use 0 (the world model's) or a value in (0, 1]")
        check_choice("actor_grad", self.actor_grad, ACTOR_GRADS)
        check_choice("actor_dist", self.actor_dist, ACTOR_DISTS)
        if self.horizon < 1:
            raise ValueError(f"horizon={self.horizon} must be at least 1")
        if self.imag_starts < 0:
            raise ValueError(f"imag_starts={self.imag_starts} must be 0 (all states) or positive")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"lambda_={self.lambda_} must lie in [0, 1]")

    def gradient(self, discrete: bool) -> str:
        """The actor gradient used for an action space: the configured one, or the paper's default."""
        if self.actor_grad != "auto":
            return self.actor_grad
        return "reinforce" if discrete else "dynamics"


def _atari() -> ActorCriticConfig:
    return ActorCriticConfig(actor_lr=4e-5, critic_lr=1e-4, actor_entropy=1e-3, actor_grad="reinforce")


def _dmc() -> ActorCriticConfig:
    return ActorCriticConfig(actor_lr=8e-5, critic_lr=8e-5, actor_entropy=1e-4, actor_grad="dynamics")


def _atari_cpu() -> ActorCriticConfig:
    """The Atari actor-critic with 2 x 256 networks and imagination from 256 of the 800 posterior
    states of a batch (the paper: 4 x 400, all 800)."""
    return dataclasses.replace(
        _atari(), actor_layers=2, actor_units=256, critic_layers=2, critic_units=256, imag_starts=256
    )


def _dmc_cpu() -> ActorCriticConfig:
    """The DMC actor-critic with 2 x 200 networks and imagination from 256 of the 800 posterior
    states of a batch (the paper: 4 x 400, all 800)."""
    return dataclasses.replace(
        _dmc(), actor_layers=2, actor_units=200, critic_layers=2, critic_units=200, imag_starts=256
    )


def _small() -> ActorCriticConfig:
    return ActorCriticConfig(
        actor_layers=2,
        actor_units=128,
        critic_layers=2,
        critic_units=128,
        actor_lr=1e-4,
        critic_lr=1e-4,
        actor_entropy=1e-3,
        slow_target_update=100,
    )


def _tiny() -> ActorCriticConfig:
    return ActorCriticConfig(
        horizon=5,
        actor_layers=1,
        actor_units=32,
        critic_layers=1,
        critic_units=32,
        actor_lr=1e-3,
        critic_lr=1e-3,
        slow_target_update=5,
    )


AGENT_PRESETS: dict[str, Callable[[], ActorCriticConfig]] = {
    "atari": _atari,
    "dmc_vision": _dmc,
    "dmc_proprio": _dmc,
    "atari_cpu": _atari_cpu,
    "dmc_vision_cpu": _dmc_cpu,
    "dmc_proprio_cpu": _dmc_cpu,
    "small": _small,
    "tiny": _tiny,
}


def agent_preset(name: str) -> ActorCriticConfig:
    """The actor-critic config of a named preset."""
    return AGENT_PRESETS[check_choice("preset", name, AGENT_PRESETS)]()
