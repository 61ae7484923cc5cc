"""The world-model training loop: collect real experience, train DreamerV2's world model on replayed
sequences, log, checkpoint and resume.

Layout of a run directory (``--logdir``)::

    run.json          the run's TrainConfig (a resume must match it)
    replay/           the sequence replay, one compressed chunk per file (replay/rank{r}/ under torchrun)
    checkpoints/      resumable training state (see agents.checkpoint)
    bundle/           the latest model bundle (config.json, model.safetensors, start_states.safetensors)
    metrics.jsonl     one JSON line per log period; TensorBoard events beside it
    openloop.png      open-loop predictions against real held-out episodes, written at the end

Run the same command again after a crash (even SIGKILL): it resumes from the last checkpoint with the
replay as it was then; only the work since that checkpoint is lost. Under ``torchrun`` the same holds
for every rank and its replay shard (see :mod:`agents.distributed` for the batch and step rules).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wmsim.bundle import encode_start_states, save_bundle
from wmsim.bundle_format import BundleError, read_bundle_config
from wmsim.config import flat_items, from_dict, to_dict
from wmsim.data import random_policy, rollout
from wmsim.devices import resolve_device
from wmsim.envs import EnvSpec, describe_spaces, make_env
from wmsim.evaluate import REGIONS, OpenLoopResult, format_table, open_loop, write_open_loop_figure
from wmsim.fileio import atomic_write_json, atomic_write_text, ensure_directory
from wmsim.world_model import IOSpec, WorldModel, WorldModelTrainer, batch_to_torch

from . import distributed
from .checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    remove_killed_writes,
    rewind_logs,
    save_checkpoint,
)
from .collect import EnvCollector, VectorEnvCollector, make_vector_env
from .config import TrainConfig
from .distributed import Dist, GradientSync
from .dreamerv2 import ActorCritic, RealEnvPolicy, play_episodes, policy_for_bundle
from .replay import Replay

log = logging.getLogger(__name__)


RUN_FILE = "run.json"


class RunMismatchError(ValueError):
    """The log directory holds a run whose configuration differs from the one asked for."""


def env_spec_for(config: TrainConfig) -> EnvSpec:
    overrides = {"obs_type": config.env_obs} if config.env_obs else {}
    return EnvSpec.from_id(config.env, **overrides)


def check_run_dir(logdir: Path, config: TrainConfig) -> bool:
    """Write ``run.json`` for a new run, or check that an existing one matches ``config`` (and clean up
    after writes a kill interrupted). Returns True when the directory already held this run."""
    ensure_directory(logdir, "--logdir")
    run_file = logdir / RUN_FILE
    remove_killed_writes(logdir)
    if not run_file.exists():
        if (logdir / "checkpoints").exists() or (logdir / "replay").exists():
            raise RunMismatchError(f"{logdir} holds training files but no run.json: use a fresh --logdir")
        atomic_write_json(run_file, to_dict(config))
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
    atomic_write_json(run_file, to_dict(config))
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
    rank: int = 0


class Trainer:
    """Holds the env(s), model, replay and counters of one run, or of one rank of a torchrun job;
    :meth:`run` trains to ``config.steps`` env steps (counted over all ranks).

    Under ``torchrun`` (see :mod:`agents.distributed`) every rank collects with its own envs and seed
    into its own replay shard (``replay/rank{r}``) and trains on its part of the global batch; the
    gradients are averaged over the ranks, so the weights stay identical everywhere. Rank 0 logs, shows
    the progress bar and writes checkpoints (with every rank's counters) and bundles.
    """

    def __init__(self, config: TrainConfig, *, progress: bool = True, dist: Dist | None = None) -> None:
        self.dist = dist if dist is not None else distributed.current()
        self.config = config
        self.progress = progress and self.dist.is_main
        self.logdir = Path(config.logdir)
        distributed.check_same_config(self.dist, flat_items(config))
        self.local_batch = distributed.local_batch(config.batch_size, self.dist.world_size)
        self.resuming = self.dist.on_main(lambda: check_run_dir(self.logdir, config))
        self.device = self._device()
        self.seed = self.dist.seed(config.seed)
        self.spec = env_spec_for(config)
        self.env = make_env(self.spec, seed=self.seed)
        self.io = IOSpec.from_spaces(self.env.observation_space, self.env.action_space)
        torch.manual_seed(config.seed)
        self.model = WorldModel(config.model, self.io).to(self.device)
        self.trainer = WorldModelTrainer(self.model, precision=config.precision)
        self.agent: ActorCritic | None = None
        if config.learn_policy:
            low, high = _action_bounds(self.env.action_space)
            self.agent = ActorCritic(
                config.agent, self.model, low, high, precision=self.trainer.precision
            ).to(self.device)
        if self.dist.enabled:
            torch.manual_seed(self.seed)  # ranks sample different latents and actions
        self.eval_returns: list[tuple[int, float]] = []
        capacity = max(self.dist.share(config.replay_capacity), config.seq_len)
        self.replay = Replay(self._replay_dir(), capacity, chunk_length=config.replay_chunk, seed=self.seed)
        self.env_step = 0
        self.updates = 0
        self.pretrained = False
        self.start_obs: deque[np.ndarray] = deque(maxlen=config.start_states)
        self.resumed_from: int | None = None
        episodes = self._restore()
        self.syncs = self._share_modules()
        self.collector = self._collector(episodes)

    def _device(self) -> torch.device:
        if self.dist.enabled:
            return distributed.rank_device(self.config.device, self.dist.local_rank)
        return resolve_device(self.config.device)

    def _replay_dir(self) -> Path:
        """``replay/`` for a single process, ``replay/rank{r}`` (the rank's shard) under torchrun."""
        root = self.logdir / "replay"
        return root / f"rank{self.dist.rank}" if self.dist.enabled else root

    def _share_modules(self) -> list[GradientSync]:
        """Under torchrun: start every rank from rank 0's weights and average gradients from now on."""
        if not self.dist.enabled:
            return []
        modules, _ = self._modules()
        for module in modules.values():
            self.dist.broadcast_module(module)
        return [GradientSync(module.parameters(), self.dist) for module in modules.values()]

    def _collector(self, episodes: int) -> EnvCollector | VectorEnvCollector:
        c = self.config
        if c.num_envs == 1:
            return EnvCollector(self.env, self.io, self.replay, self.start_obs, self.seed, episodes)
        envs = make_vector_env(self.spec, c.num_envs, self.seed, asynchronous=c.vector_env == "async")
        return VectorEnvCollector(envs, self.io, self.replay, self.start_obs, self.seed, episodes)

    @property
    def episodes(self) -> int:
        """This rank's episode counter: an episode is reset with seed ``seed + episodes``."""
        return self.collector.episodes

    def close(self) -> None:
        self.collector.close()
        self.env.close()
        for sync in self.syncs:
            sync.close()

    # ------------------------------------------------------------------ checkpoints
    def _modules(self) -> tuple[dict[str, Any], dict[str, Any]]:
        modules: dict[str, Any] = {"world_model": self.model}
        optimizers: dict[str, Any] = {"world_model": self.trainer.optimizer}
        if self.agent is not None:
            modules["agent"] = self.agent
            optimizers.update(actor=self.agent.actor_opt, critic=self.agent.critic_opt)
        return modules, optimizers

    def _restore(self) -> int:
        """Load the newest checkpoint this rank's replay shard still supports, if any; returns the episode
        count. A run killed before its first checkpoint starts over (its replay and logs are dropped)."""
        path = self._resumable_checkpoint()
        if path is None:
            if self.replay.total_steps:
                log.warning(
                    "no checkpoint in %s: discarding %d replay steps of an unfinished start",
                    self.logdir,
                    self.replay.total_steps,
                )
                self.replay.truncate(0)
            if self.dist.is_main:
                rewind_logs(self.logdir, "env_step", 0)
            return 0
        modules, optimizers = self._modules()
        step, state, extra = load_checkpoint(path, modules, optimizers)
        mine = _rank_state(path, state, extra, self.dist)
        self.env_step, self.updates = step, int(state["updates"])
        self.pretrained = bool(state["pretrained"])
        self.eval_returns = [(int(a), float(b)) for a, b in state.get("eval_returns", [])]
        self.replay.truncate(int(mine["replay_total"]))
        self.replay.load_state_dict(mine["replay"])
        torch.set_rng_state(mine["torch_rng"].to(torch.uint8))
        if "start_obs" in extra:
            self.start_obs.extend(extra["start_obs"].numpy())
        self.resumed_from = step
        if self.dist.is_main:
            rewind_logs(self.logdir, "env_step", step)
            if _bundle_step(self.logdir / "bundle") != step:  # a kill came between checkpoint and bundle
                self.write_bundle()
        log.info(
            "resumed %s from env step %d (%d updates, %d replay steps)",
            self.logdir,
            step,
            self.updates,
            len(self.replay),
        )
        return int(mine["episodes"])

    def _resumable_checkpoint(self) -> Path | None:
        """The newest checkpoint whose replay every rank still holds. A newer one whose replay steps were
        lost (a corrupt newest chunk set aside by :class:`Replay`) cannot be resumed exactly: it is
        deleted, with a warning, and the run goes on from the one before."""
        found = list_checkpoints(self.logdir)
        mine = []
        for path in found:
            _, state = read_checkpoint_state(path)
            _check_world_size(path, state, self.dist)
            if _replay_total(state, self.dist.rank) <= self.replay.total_steps:
                mine.append(path.name)
        everywhere = set.intersection(*(set(names) for names in self.dist.gather(mine)))
        usable = [path for path in found if path.name in everywhere]
        if found and not usable:
            raise CheckpointError(
                f"the replay in {self._replay_dir()} holds {self.replay.total_steps} steps, fewer than any"
                f" checkpoint of {self.logdir} needs (chunk files were lost or set aside as corrupt): the run"
                " cannot resume exactly; start it again in a new --logdir"
            )
        lost = found[: found.index(usable[0])] if usable else []
        if lost and self.dist.is_main:
            for path in lost:
                log.warning(
                    "checkpoint %s needs replay steps that are lost (see the replay warnings above):"
                    " deleting it and resuming from %s",
                    path,
                    usable[0].name,
                )
                shutil.rmtree(path, ignore_errors=True)
        self.dist.barrier()
        return usable[0] if usable else None

    def checkpoint(self) -> None:
        """Flush the replay (each rank its shard), then rank 0 writes the training state of every rank
        and the model bundle while the other ranks wait."""
        self.replay.flush()
        mine = {
            "episodes": self.episodes,
            "replay_total": self.replay.total_steps,
            "replay": self.replay.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        ranks = self.dist.gather(mine)
        self.dist.on_main(lambda: self._write_checkpoint(ranks))

    def _write_checkpoint(self, ranks: list[dict[str, Any]]) -> None:
        first = ranks[0]
        state: dict[str, Any] = {
            "updates": self.updates,
            "episodes": first["episodes"],
            "pretrained": self.pretrained,
            "replay_total": first["replay_total"],
            "replay": first["replay"],
            "eval_returns": self.eval_returns,
        }
        extra = {"torch_rng": first["torch_rng"]}
        if self.dist.enabled:
            state["world_size"] = self.dist.world_size
            state["ranks"] = [{k: r[k] for k in ("episodes", "replay_total", "replay")} for r in ranks]
            extra.update({f"torch_rng_rank{i}": r["torch_rng"] for i, r in enumerate(ranks) if i})
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
    def _ready(self) -> bool:
        """Whether every rank's replay holds its share of the prefill and a whole training sequence."""
        c = self.config
        local = self.replay.total_steps >= self.dist.share(c.prefill) and len(self.replay) >= c.seq_len
        return self.dist.all_true(local)

    def _train_if_due(self, before: int, metrics: list[dict[str, torch.Tensor]]) -> None:
        """The pretraining updates once the replay is ready, then ``train_steps`` updates for every
        multiple of ``train_every`` env steps passed since ``before``."""
        c = self.config
        if not self.pretrained and self._ready():
            self._train_phase(c.pretrain, metrics)
            self.pretrained = True
        phases = self.env_step // c.train_every - before // c.train_every
        if self.pretrained and phases > 0:
            self._train_phase(c.train_steps * phases, metrics)

    def _train_phase(self, updates: int, metrics: list[dict[str, torch.Tensor]]) -> None:
        for _ in range(updates):
            sample = self.replay.sample(
                self.local_batch, self.config.seq_len, prioritize_ends=self.config.prioritize_ends
            )
            batch = batch_to_torch(sample, self.device)
            posts, step_metrics = self.trainer.train_step(batch)
            if self.agent is not None:
                step_metrics.update(self.agent.train_step(self.model, posts, batch["is_terminal"]))
            metrics.append(step_metrics)
            self.updates += 1

    def run(self) -> TrainResult:
        c = self.config
        self.collector.begin(self.seed + self.env_step, self.agent, self.model)
        logger = MetricsLogger(self.logdir) if self.dist.is_main else None
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
        try:
            while self.env_step < c.steps:
                before = self.env_step
                self.env_step += self.collector.step(use_agent=self.pretrained) * self.dist.world_size
                self._train_if_due(before, pending)
                bar.update(self.env_step - before)
                end = self.env_step >= c.steps
                if self.agent is not None and (_crossed(before, self.env_step, c.eval_every) or end):
                    pending_eval = self.evaluate_policy()
                    if logger is not None:
                        logger.write(self.env_step, {"eval_return": pending_eval})
                    postfix["eval_return"] = f"{pending_eval:.1f}"
                    bar.set_postfix(postfix, refresh=False)
                if _crossed(before, self.env_step, c.log_every) or end:
                    now = time.perf_counter()
                    last = self._summarise(
                        pending, now - tick_time, self.env_step - tick_step, self.updates - tick_updates
                    )
                    if logger is not None:
                        logger.write(self.env_step, last)
                    postfix.update(
                        {k: f"{last[k]:.3g}" for k in ("model_loss", "env_sps", "updates_ps") if k in last}
                    )
                    bar.set_postfix(postfix, refresh=False)
                    pending = []
                    tick_time, tick_step, tick_updates = now, self.env_step, self.updates
                if _crossed(before, self.env_step, c.checkpoint_every) or end:
                    self.checkpoint()
        finally:
            bar.close()
            if logger is not None:
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
            rank=self.dist.rank,
        )

    def _real_policy(self, mode: bool) -> RealEnvPolicy | None:
        if self.agent is None:
            return None
        return RealEnvPolicy(
            self.model, self.agent.actor, self.env.action_space, self.agent.to_model_action, mode=mode
        )

    def evaluate_policy(self) -> float:
        """Mean real return of the policy's mode over ``eval_episodes`` (seeds 10**6 + i); under
        torchrun the episodes are shared out over the ranks."""
        policy = self._real_policy(mode=True)
        assert policy is not None
        env = make_env(self.spec, seed=10**6)
        mine = range(self.dist.rank, self.config.eval_episodes, self.dist.world_size)
        returns = [play_episodes(env, policy, 1, seed=10**6 + i)[0] for i in mine]
        env.close()
        mean = float(np.mean([r for part in self.dist.gather(returns) for r in part]))
        self.eval_returns.append((self.env_step, mean))
        return mean

    def _summarise(
        self, pending: list[dict[str, torch.Tensor]], seconds: float, steps: int, updates: int
    ) -> dict[str, float]:
        """The period's metrics averaged over its updates (and over the ranks), and throughput."""
        out: dict[str, float] = {}
        if pending:
            keys = pending[0].keys()
            stacked = torch.stack([torch.stack([m[k].float() for k in keys]) for m in pending]).mean(0)
            out.update(zip(keys, self.dist.mean(stacked).tolist(), strict=True))
        out["env_sps"] = steps / max(seconds, 1e-9)
        out["updates_ps"] = updates / max(seconds, 1e-9)
        out["updates"] = float(self.updates)
        out["replay_steps"] = self.dist.sum(float(len(self.replay)))
        return out


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(before, after]``."""
    return after // every > before // every


def _bundle_step(path: Path) -> int | None:
    """The env step a run's bundle was written at (None when it is missing or unreadable)."""
    try:
        return int(read_bundle_config(path)["info"]["env_steps"])
    except (BundleError, KeyError, TypeError, ValueError):
        return None


def _check_world_size(path: Path, state: dict[str, Any], dist: Dist) -> None:
    """Refuse a checkpoint written by another number of ranks than this launch has."""
    world = int(state.get("world_size", 1))
    if world != dist.world_size:
        launch = "one process" if world == 1 else f"torchrun --nproc_per_node ... ({world} ranks in all)"
        raise distributed.DistributedError(
            f"checkpoint {path} was written by a run of {world} rank(s), this launch has"
            f" {dist.world_size}: resume it with {launch}, or start a new --logdir"
        )


def _replay_total(state: dict[str, Any], rank: int) -> int:
    """The replay length of ``rank``'s shard at a checkpoint."""
    if int(state.get("world_size", 1)) == 1:
        return int(state["replay_total"])
    return int(state["ranks"][rank]["replay_total"])


def _rank_state(path: Path, state: dict[str, Any], extra: dict[str, Any], dist: Dist) -> dict[str, Any]:
    """This rank's counters, replay state and RNG in a checkpoint (checking the number of ranks)."""
    _check_world_size(path, state, dist)
    if dist.world_size == 1:
        keys = ("episodes", "replay_total", "replay")
        return {**{k: state[k] for k in keys}, "torch_rng": extra["torch_rng"]}
    rng = extra[f"torch_rng_rank{dist.rank}" if dist.rank else "torch_rng"]
    return {**state["ranks"][dist.rank], "torch_rng": rng}


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
    behaviour: str = "random",
) -> OpenLoopResult:
    """Collect held-out episodes (seeds ``seed, seed+1, ...``) of a ``behaviour`` (``random``, or
    ``scripted`` / ``mixed`` where :mod:`agents.behaviours` has a player for the env, which scores
    points a random policy never does) and evaluate the model open loop on them."""
    from .behaviours import behaviour_for, check_behaviour

    check_behaviour(behaviour, spec.id)
    env = make_env(spec, seed=seed)
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    data = []
    for i in range(episodes):
        policy = (
            random_policy(env.action_space)
            if behaviour == "random"
            else behaviour_for(behaviour, spec.id, env, i, rng)
        )
        data.append(rollout(env, policy, io, seed=seed + i, max_steps=max_steps))
    env.close()
    result, pictures = open_loop(
        model,
        data,
        context=context,
        horizon=horizon,
        return_predictions=figure is not None,
        regions=REGIONS.get(spec.id),
    )
    if figure is not None:
        write_open_loop_figure(pictures, figure, context)
    return result


def train(config: TrainConfig, *, progress: bool = True, evaluate: bool = True) -> TrainResult:
    """Train (or resume) a run to ``config.steps`` env steps; then evaluate the bundle open loop on
    held-out episodes, write ``openloop.png`` and ``openloop.json`` and print a summary table.

    Launched by ``torchrun``, every process calls this: they train data-parallel (see
    :mod:`agents.distributed`) and rank 0 alone evaluates at the end.
    """
    with distributed.launch(config.device, config.dist_timeout) as dist:
        trainer = Trainer(config, progress=progress, dist=dist)
        try:
            result = trainer.run()
        finally:
            trainer.close()
    if evaluate and dist.is_main:
        result.open_loop = evaluate_model(
            trainer.model, trainer.spec, figure=trainer.logdir / "openloop.png", episodes=5, horizon=50
        )
        atomic_write_text(trainer.logdir / "openloop.json", result.open_loop.to_json())
        if progress:
            print(format_table(result.open_loop))
    return result
