"""Training configuration: the world-model config plus the data and schedule of a run, with the
DreamerV2 paper's values as named presets (``atari``, ``dmc_vision``, ``dmc_proprio``) and small CPU
presets (``small``, ``tiny``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from wmsim.config import WorldModelConfig, check_at_least, check_choice, model_preset

from .dreamerv2.config import ActorCriticConfig, agent_preset


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Step counts are agent steps (after action repeat) unless said otherwise."""

    env: str = field(
        default="CartPole-v1", metadata={"help": "env id: atari/Pong, dmc/walker-walk, CartPole-v1"}
    )
    env_obs: str = field(default="", metadata={"help": "observation type override: pixels or state"})
    steps: int = field(default=100_000, metadata={"help": "env steps to collect in total"})
    logdir: str = field(default="runs/default", metadata={"help": "run directory (resumed if it exists)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU), bf16 or fp32"})
    seed: int = field(
        default=0, metadata={"help": "seed of rank 0; rank r adds 10^7 r (see agents.distributed)"}
    )
    batch_size: int = field(
        default=16, metadata={"help": "global batch: split evenly over the ranks of a torchrun job"}
    )
    seq_len: int = 50
    train_every: int = field(default=16, metadata={"help": "env steps between training phases"})
    train_steps: int = field(default=1, metadata={"help": "gradient updates per training phase"})
    prefill: int = field(default=50_000, metadata={"help": "random env steps before training starts"})
    pretrain: int = field(default=1, metadata={"help": "updates made once, right after prefill"})
    replay_capacity: int = 2_000_000
    prioritize_ends: bool = field(
        default=True,
        metadata={"help": "sample the windows at episode ends more often (DreamerV2; off for DMC)"},
    )
    replay_chunk: int = field(default=1024, metadata={"help": "steps per replay file on disk"})
    log_every: int = field(default=1000, metadata={"help": "env steps between metric logs"})
    checkpoint_every: int = field(default=10_000, metadata={"help": "env steps between checkpoints"})
    start_states: int = field(default=256, metadata={"help": "episode starts kept for the bundle"})
    learn_policy: bool = field(
        default=True,
        metadata={"help": "train the DreamerV2 actor-critic and act with it after prefill (false: random)"},
    )
    eval_every: int = field(default=10_000, metadata={"help": "env steps between policy evaluations"})
    eval_episodes: int = field(default=5, metadata={"help": "episodes per evaluation (policy mode)"})
    num_envs: int = field(default=1, metadata={"help": "real envs stepped together per process"})
    vector_env: str = field(
        default="async", metadata={"help": "with num_envs > 1: async (a process per env) or sync"}
    )
    dist_timeout: int = field(
        default=1800, metadata={"help": "seconds a torchrun rank waits for the others before failing"}
    )
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    agent: ActorCriticConfig = field(default_factory=ActorCriticConfig)

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "batch_size",
            "seq_len",
            "train_every",
            "train_steps",
            "replay_capacity",
            "replay_chunk",
            "log_every",
            "checkpoint_every",
            "start_states",
            "eval_every",
            "eval_episodes",
            "num_envs",
            "dist_timeout",
        )
        for name in positive:
            check_at_least(name, getattr(self, name), 1)
        for name in ("prefill", "pretrain"):
            check_at_least(name, getattr(self, name), 0)
        if self.replay_capacity < self.seq_len:
            raise ValueError(f"replay_capacity={self.replay_capacity} is smaller than seq_len={self.seq_len}")
        if self.env_obs not in ("", "pixels", "state"):
            raise ValueError(f"env_obs={self.env_obs!r}: choose 'pixels', 'state' or leave empty")
        if self.vector_env not in ("async", "sync"):
            raise ValueError(f"vector_env={self.vector_env!r}: choose 'async' or 'sync'")

    # Fields that may change between a run and its resume; anything else must match.
    OPERATIONAL = (
        "steps",
        "logdir",
        "device",
        "log_every",
        "checkpoint_every",
        "precision",
        "eval_every",
        "eval_episodes",
        "num_envs",
        "vector_env",
        "dist_timeout",
    )


def _atari() -> TrainConfig:
    return TrainConfig(
        env="atari/Pong",
        steps=50_000_000,
        train_every=16,
        prefill=50_000,
        pretrain=1,
        eval_every=100_000,
        model=model_preset("atari"),
        agent=agent_preset("atari"),
    )


def _dmc_vision() -> TrainConfig:
    return TrainConfig(
        env="dmc/walker-walk",
        env_obs="pixels",
        steps=1_000_000,
        train_every=5,
        prioritize_ends=False,
        prefill=1000,
        pretrain=100,
        log_every=1000,
        eval_every=10_000,
        model=model_preset("dmc_vision"),
        agent=agent_preset("dmc_vision"),
    )


def _dmc_proprio() -> TrainConfig:
    return dataclasses.replace(
        _dmc_vision(), env_obs="state", model=model_preset("dmc_proprio"), agent=agent_preset("dmc_proprio")
    )


def _atari_cpu() -> TrainConfig:
    """The paper's Atari protocol with the CPU-sized model (:func:`wmsim.config.model_preset`
    ``atari_cpu``): 500k agent steps (2M frames), evaluated every 25k steps (100k frames)."""
    return dataclasses.replace(
        _atari(),
        steps=500_000,
        eval_every=25_000,
        checkpoint_every=10_000,
        model=model_preset("atari_cpu"),
        agent=agent_preset("atari_cpu"),
    )


def _dmc_vision_cpu() -> TrainConfig:
    """The paper's DMC-from-pixels protocol with the CPU-sized model: 50k agent steps (100k frames
    at action repeat 2), evaluated every 5k steps (10k frames)."""
    return dataclasses.replace(
        _dmc_vision(),
        steps=50_000,
        eval_every=5_000,
        checkpoint_every=2_500,
        model=model_preset("dmc_vision_cpu"),
        agent=agent_preset("dmc_vision_cpu"),
    )


def _small() -> TrainConfig:
    return TrainConfig(
        env="CartPole-v1",
        steps=20_000,
        batch_size=16,
        seq_len=32,
        train_every=5,
        prefill=1000,
        pretrain=100,
        replay_capacity=100_000,
        replay_chunk=512,
        log_every=500,
        checkpoint_every=2000,
        eval_every=2000,
        model=model_preset("small"),
        agent=agent_preset("small"),
    )


def _tiny() -> TrainConfig:
    return TrainConfig(
        env="CartPole-v1",
        steps=2000,
        batch_size=4,
        seq_len=16,
        train_every=10,
        prefill=200,
        pretrain=5,
        replay_capacity=10_000,
        replay_chunk=128,
        log_every=100,
        checkpoint_every=500,
        start_states=16,
        eval_every=1000,
        eval_episodes=2,
        model=model_preset("tiny"),
        agent=agent_preset("tiny"),
    )


TRAIN_PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "atari": _atari,
    "dmc_vision": _dmc_vision,
    "dmc_proprio": _dmc_proprio,
    "atari_cpu": _atari_cpu,
    "dmc_vision_cpu": _dmc_vision_cpu,
    "small": _small,
    "tiny": _tiny,
}


def train_preset(name: str) -> TrainConfig:
    """The training config of a named preset; a typo raises a ValueError with the closest name."""
    return TRAIN_PRESETS[check_choice("preset", name, TRAIN_PRESETS)]()
