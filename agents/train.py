"""The world-model training loop: collect real experience, train DreamerV2's world model on replayed
sequences, log, checkpoint and resume.

Layout of a run directory (``--logdir``)::

    run.json          the run's TrainConfig (a resume must match it)
    replay/           the sequence replay, one compressed chunk per file
    checkpoints/      resumable training state (see agents.checkpoint)
    bundle/           the latest model bundle (config.json, model.safetensors, start_states.safetensors)
    metrics.jsonl     one JSON line per log period; TensorBoard events beside it
    openloop.png      open-loop predictions against real held-out episodes, written at the end

Run the same command again after a crash (even SIGKILL): it resumes from the last checkpoint with the
replay as it was then; only the work since that checkpoint is lost.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wmsim.bundle import encode_start_states, save_bundle
from wmsim.config import flat_items, from_dict, to_dict
from wmsim.data import first_step, next_step, random_policy, rollout
from wmsim.devices import resolve_device
from wmsim.envs import EnvSpec, describe_spaces, make_env
from wmsim.evaluate import OpenLoopResult, format_table, open_loop, write_open_loop_figure
from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer, batch_to_torch

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .dreamerv2 import ActorCritic, RealEnvPolicy, play_episodes, policy_for_bundle
from .replay import Replay

log = logging.getLogger(__name__)


class RunMismatchError(ValueError):
    """The log directory holds a run whose configuration differs from the one asked for."""


def env_spec_for(config: TrainConfig) -> EnvSpec:
    overrides = {"obs_type": config.env_obs} if config.env_obs else {}
    return EnvSpec.from_id(config.env, **overrides)


def check_run_dir(logdir: Path, config: TrainConfig) -> bool:
    """Write ``run.json`` for a new run, or check that an existing one matches ``config``.
    Returns True when the directory already held this run."""
    run_file = logdir / "run.json"
    if not run_file.exists():
        if (logdir / "checkpoints").exists() or (logdir / "replay").exists():
            raise RunMismatchError(f"{logdir} holds training files but no run.json: use a fresh --logdir")
        logdir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps(to_dict(config), indent=2, sort_keys=True))
        return False
    try:
        previous = from_dict(TrainConfig, json.loads(run_file.read_text()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise RunMismatchError(f"{run_file} is not a wmsim run config ({exc}): use a fresh --logdir") from exc
    old, new = flat_items(previous), flat_items(config)
    differs = [k for k in new if k not in TrainConfig.OPERATIONAL and old.get(k) != new[k]]
    if differs:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in differs[:6])
        raise RunMismatchError(
            f"{logdir} holds another run whose checkpoint is incompatible ({detail}). Resume it with its"
            " original options, or start this run in a new --logdir."
        )
    run_file.write_text(json.dumps(to_dict(config), indent=2, sort_keys=True))
    return True


class MetricsLogger:
    """Writes scalar metrics to TensorBoard and to ``metrics.jsonl``."""

    def __init__(self, logdir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir))
        self.jsonl = open(logdir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.jsonl.write(json.dumps({"env_step": step, **metrics}) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        self.writer.close()
        self.jsonl.close()


@dataclass
class TrainResult:
    env_steps: int
    updates: int
    bundle: Path
    logdir: Path
    resumed_from: int | None
    last_metrics: dict[str, float]
    open_loop: OpenLoopResult | None
    eval_returns: list[tuple[int, float]] = dataclasses.field(default_factory=list)


class Trainer:
    """Holds the env, model, replay and counters of one run; :meth:`run` trains to ``config.steps``."""

    def __init__(self, config: TrainConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.logdir = Path(config.logdir)
        self.resuming = check_run_dir(self.logdir, config)
        self.device = resolve_device(config.device)
        self.spec = env_spec_for(config)
        self.env = make_env(self.spec, seed=config.seed)
        self.io = IOSpec.from_spaces(self.env.observation_space, self.env.action_space)
        torch.manual_seed(config.seed)
        self.model = WorldModel(config.model, self.io).to(self.device)
        self.trainer = WorldModelTrainer(self.model, precision=config.precision)
        self.agent: ActorCritic | None = None
        if config.learn_policy:
            low, high = _action_bounds(self.env.action_space)
            self.agent = ActorCritic(config.agent, self.model, low, high).to(self.device)
        self.eval_returns: list[tuple[int, float]] = []
        self.replay = Replay(
            self.logdir / "replay", config.replay_capacity, chunk_length=config.replay_chunk, seed=config.seed
        )
        self.env_step = 0
        self.updates = 0
        self.episodes = 0
        self.pretrained = False
        self.start_obs: deque[np.ndarray] = deque(maxlen=config.start_states)
        self.resumed_from: int | None = None
        self._restore()

    # ------------------------------------------------------------------ checkpoints
    def _modules(self) -> tuple[dict[str, Any], dict[str, Any]]:
        modules: dict[str, Any] = {"world_model": self.model}
        optimizers: dict[str, Any] = {"world_model": self.trainer.optimizer}
        if self.agent is not None:
            modules["agent"] = self.agent
            optimizers.update(actor=self.agent.actor_opt, critic=self.agent.critic_opt)
        return modules, optimizers

    def _restore(self) -> None:
        path = latest_checkpoint(self.logdir)
        if path is None:
            if self.replay.total_steps:
                log.warning(
                    "no checkpoint in %s: discarding %d replay steps of an unfinished start",
                    self.logdir,
                    self.replay.total_steps,
                )
                self.replay.truncate(0)
            return
        modules, optimizers = self._modules()
        step, state, extra = load_checkpoint(path, modules, optimizers)
        self.env_step, self.updates = step, int(state["updates"])
        self.episodes, self.pretrained = int(state["episodes"]), bool(state["pretrained"])
        self.eval_returns = [(int(a), float(b)) for a, b in state.get("eval_returns", [])]
        self.replay.truncate(int(state["replay_total"]))
        self.replay.load_state_dict(state["replay"])
        torch.set_rng_state(extra["torch_rng"].to(torch.uint8))
        if "start_obs" in extra:
            self.start_obs.extend(extra["start_obs"].numpy())
        self.resumed_from = step
        log.info(
            "resumed %s from env step %d (%d updates, %d replay steps)",
            self.logdir,
            step,
            self.updates,
            len(self.replay),
        )

    def checkpoint(self) -> None:
        """Flush the replay, then write the training state and the model bundle."""
        self.replay.flush()
        state = {
            "updates": self.updates,
            "episodes": self.episodes,
            "pretrained": self.pretrained,
            "replay_total": self.replay.total_steps,
            "replay": self.replay.state_dict(),
            "eval_returns": self.eval_returns,
        }
        extra = {"torch_rng": torch.get_rng_state()}
        if self.start_obs:
            extra["start_obs"] = torch.as_tensor(np.stack(list(self.start_obs)))
        modules, optimizers = self._modules()
        save_checkpoint(self.logdir, self.env_step, modules, optimizers, state, extra)
        self.write_bundle()

    def write_bundle(self) -> Path:
        obs = torch.as_tensor(np.stack(list(self.start_obs)))
        starts = encode_start_states(self.model, obs)
        info = {
            "env_steps": self.env_step,
            "updates": self.updates,
            "seed": self.config.seed,
            "train_config": to_dict(self.config),
        }
        if self.eval_returns:
            info["eval_returns"] = self.eval_returns
        policy = policy_for_bundle(self.agent) if self.agent is not None else None
        return save_bundle(
            self.logdir / "bundle", self.model, self.spec, describe_spaces(self.env), starts, info, policy
        )

    # ------------------------------------------------------------------ the loop
    def _reset_env(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.config.seed + self.episodes)
        self.replay.add(first_step(obs, self.io))
        self.start_obs.append(obs)
        return obs

    def _train_phase(self, updates: int, metrics: list[dict[str, torch.Tensor]]) -> None:
        for _ in range(updates):
            batch = self.replay.sample(self.config.batch_size, self.config.seq_len)
            posts, step_metrics = self.trainer.train_step(batch_to_torch(batch, self.device))
            if self.agent is not None:
                step_metrics.update(self.agent.train_step(self.model, posts))
            metrics.append(step_metrics)
            self.updates += 1

    def run(self) -> TrainResult:
        c = self.config
        self.env.action_space.seed(c.seed + self.env_step)
        random_actions = random_policy(self.env.action_space)
        agent_policy = self._real_policy(mode=False)
        logger = MetricsLogger(self.logdir)
        pending: list[dict[str, torch.Tensor]] = []
        last: dict[str, float] = {}
        bar = tqdm(
            total=c.steps,
            initial=self.env_step,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        tick_time, tick_step, tick_updates = time.perf_counter(), self.env_step, self.updates
        postfix: dict[str, str] = {}
        obs = self._reset_env()
        try:
            while self.env_step < c.steps:
                if agent_policy is not None and self.pretrained:
                    action = agent_policy.act(obs)
                else:
                    action = random_actions(obs)
                obs, reward, terminated, truncated, _ = self.env.step(action)
                self.env_step += 1
                self.replay.add(next_step(obs, action, float(reward), terminated, truncated, self.io))
                if terminated or truncated:
                    self.episodes += 1
                    obs = self._reset_env()
                    if agent_policy is not None:
                        agent_policy.reset()
                ready = self.replay.total_steps >= c.prefill and len(self.replay) >= c.seq_len
                if ready and not self.pretrained:
                    self._train_phase(c.pretrain, pending)
                    self.pretrained = True
                if ready and self.env_step % c.train_every == 0:
                    self._train_phase(c.train_steps, pending)
                bar.update(1)
                if agent_policy is not None and (
                    self.env_step % c.eval_every == 0 or self.env_step == c.steps
                ):
                    pending_eval = self.evaluate_policy()
                    logger.write(self.env_step, {"eval_return": pending_eval})
                    postfix["eval_return"] = f"{pending_eval:.1f}"
                    bar.set_postfix(postfix, refresh=False)
                if self.env_step % c.log_every == 0 or self.env_step == c.steps:
                    now = time.perf_counter()
                    last = self._summarise(
                        pending, now - tick_time, self.env_step - tick_step, self.updates - tick_updates
                    )
                    logger.write(self.env_step, last)
                    postfix.update(
                        {k: f"{last[k]:.3g}" for k in ("model_loss", "env_sps", "updates_ps") if k in last}
                    )
                    bar.set_postfix(postfix, refresh=False)
                    pending = []
                    tick_time, tick_step, tick_updates = now, self.env_step, self.updates
                if self.env_step % c.checkpoint_every == 0 or self.env_step == c.steps:
                    self.checkpoint()
        finally:
            bar.close()
            logger.close()
        return TrainResult(
            self.env_step,
            self.updates,
            self.logdir / "bundle",
            self.logdir,
            self.resumed_from,
            last,
            None,
            list(self.eval_returns),
        )

    def _real_policy(self, mode: bool) -> RealEnvPolicy | None:
        if self.agent is None:
            return None
        return RealEnvPolicy(
            self.model, self.agent.actor, self.env.action_space, self.agent.to_model_action, mode=mode
        )

    def evaluate_policy(self) -> float:
        """Mean real return of the policy's mode over ``eval_episodes`` (seeds 10**6 + i)."""
        policy = self._real_policy(mode=True)
        assert policy is not None
        env = make_env(self.spec, seed=10**6)
        returns = play_episodes(env, policy, self.config.eval_episodes, seed=10**6)
        env.close()
        mean = float(np.mean(returns))
        self.eval_returns.append((self.env_step, mean))
        return mean

    def _summarise(
        self, pending: list[dict[str, torch.Tensor]], seconds: float, steps: int, updates: int
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        if pending:
            keys = pending[0].keys()
            stacked = torch.stack([torch.stack([m[k].float() for k in keys]) for m in pending]).mean(0)
            out.update(zip(keys, stacked.tolist(), strict=True))
        out["env_sps"] = steps / max(seconds, 1e-9)
        out["updates_ps"] = updates / max(seconds, 1e-9)
        out["updates"] = float(self.updates)
        out["replay_steps"] = float(len(self.replay))
        return out


def _action_bounds(space: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if hasattr(space, "low") and hasattr(space, "high"):
        return torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(
            space.high, dtype=torch.float32
        )
    return None, None


def evaluate_model(
    model: WorldModel,
    spec: EnvSpec,
    *,
    episodes: int = 10,
    seed: int = 10_000,
    context: int = 5,
    horizon: int = 50,
    max_steps: int = 500,
    figure: Path | None = None,
) -> OpenLoopResult:
    """Collect held-out random-policy episodes (seeds ``seed, seed+1, ...``) and evaluate open loop."""
    env = make_env(spec, seed=seed)
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    env.action_space.seed(seed)
    policy = random_policy(env.action_space)
    data = [rollout(env, policy, io, seed=seed + i, max_steps=max_steps) for i in range(episodes)]
    env.close()
    result, pictures = open_loop(
        model, data, context=context, horizon=horizon, return_predictions=figure is not None
    )
    if figure is not None:
        write_open_loop_figure(pictures, figure, context)
    return result


def train(config: TrainConfig, *, progress: bool = True, evaluate: bool = True) -> TrainResult:
    """Train (or resume) a run to ``config.steps`` env steps; then evaluate the bundle open loop on
    held-out episodes, write ``openloop.png`` and ``openloop.json`` and print a summary table."""
    trainer = Trainer(config, progress=progress)
    result = trainer.run()
    if evaluate:
        result.open_loop = evaluate_model(
            trainer.model, trainer.spec, figure=trainer.logdir / "openloop.png", episodes=5, horizon=50
        )
        (trainer.logdir / "openloop.json").write_text(result.open_loop.to_json())
        if progress:
            print(format_table(result.open_loop))
    trainer.env.close()
    return result
