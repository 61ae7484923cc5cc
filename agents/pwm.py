"""PWM: first-order policy learning through a (multi-task) world model.

Georgiev, Giridhar, Hansen, Garg, "PWM: Policy Learning with Multi-Task World Models" (2024): pretrain
one world model on offline data of many tasks, then learn each task's policy by backpropagating
imagined rewards through the model's dynamics over a short horizon, with a critic for the tail (the
short-horizon actor-critic of SHAC, Xu et al. 2022). Here the world model is wmsim's DreamerV2 RSSM,
bound to one task (:meth:`wmsim.WorldModel.for_task`) or single-task, and frozen.

One update (:meth:`PWMLearner.train_step`), top to bottom:

0. ``N`` start states ``s_0``: the states of ``N`` dreamed episodes that the current actor advances
   between updates (reset from the bundle's bank of real starts when they end), or the model's
   posterior states of real data (``replay=``), as PWM starts from its dataset;
1. imagine ``H`` steps through the world model, keeping the graph (``detach``: the actor sees
   ``sg(s_t)``, as PWM)::

       a_t = tanh(mu(s_t) + sigma * eps_t),            eps_t ~ N(0, I)       (reparameterised)
       s_{t+1}, r_{t+1}, c_{t+1} = WorldModel.step(s_t, scale(a_t))          (straight-through samples)

2. the actor maximises the imagined return with the target critic's bootstrap::

       J = 1 / (N H) * sum_i [ sum_{t<H} gamma^t w_t r_{t+1} + gamma^H w_H V'(s_H) ]
       w_t = prod_{k=1..t} c_k  (stop-gradient, w_0 = 1),   V' = min over the target critics

   ``dJ/dtheta`` flows from the rewards and ``V'(s_H)`` back through the transitions into every
   ``a_t``: first-order gradients, no likelihood-ratio term;
3. TD(lambda) targets on the detached trajectory (:func:`agents.dreamerv2.lambda_returns`)::

       R_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) V'(s_{t+1}) + lambda R_{t+1}),   R_H = V'(s_H)

4. every critic of the ensemble regresses ``(V_k(s_t) - R_t)^2`` over ``critic_iterations`` passes of
   ``critic_batches`` minibatches of the ``N H`` pairs;
5. the target critics follow: ``phi' <- alpha phi' + (1 - alpha) phi``.

``wmsim train --dream BUNDLE --task walker-walk --learner pwm`` runs it; the actor is written into the
bundle as a ``pwm-actor`` policy that ``wmsim eval BUNDLE`` plays in the real env.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wmsim.bundle import Bundle
from wmsim.config import check_at_least, check_choice, from_dict, to_dict
from wmsim.data import play_episodes
from wmsim.dream.simulator import bundle_for_task
from wmsim.envs import make_env
from wmsim.rssm import State
from wmsim.world_model import WorldModel

from .dream_loop import DreamTrainResult, action_bounds, train_in_dream
from .dreamerv2 import RealEnvPolicy, lambda_returns

log = logging.getLogger(__name__)

POLICY_KIND = "pwm-actor"
LR_SCHEDULES = ("linear", "constant")


@dataclass(frozen=True)
class PWMConfig:
    """The settings of first-order policy learning; the defaults are PWM's (its ``pwm_48M`` config:
    horizon 16, TD(lambda) 0.95, gamma 0.99, Adam 5e-4 with betas (0.7, 0.95) and a linear decay, three
    critics, 8 x 4 critic minibatches, actor clip 1, critic clip 100, actor MLP 400-200-100 and critic
    400-200 with Mish, log-std from -1 bounded below by -1.427). The target critics' ``alpha`` is
    SHAC's. ``num_envs`` is the number of imagined trajectories per update."""

    horizon: int = field(default=16, metadata={"help": "imagined steps per update (H)"})
    gamma: float = 0.99
    lambda_: float = 0.95
    num_envs: int = field(default=64, metadata={"help": "imagined trajectories per update (N)"})
    actor_units: tuple[int, ...] = (400, 200, 100)
    critic_units: tuple[int, ...] = (400, 200)
    num_critics: int = 3
    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    betas: tuple[float, ...] = (0.7, 0.95)
    lr_schedule: str = "linear"
    critic_iterations: int = 8
    critic_batches: int = 4
    target_critic_alpha: float = 0.2
    actor_grad_norm: float = 1.0
    critic_grad_norm: float = 100.0
    init_logstd: float = -1.0
    min_logstd: float = -1.427
    detach: bool = True

    def __post_init__(self) -> None:
        for name in ("horizon", "num_envs", "num_critics", "critic_iterations", "critic_batches"):
            check_at_least(name, getattr(self, name), 1)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"gamma={self.gamma} must lie in (0, 1] and lambda_={self.lambda_} in [0, 1]")
        if not 0.0 <= self.target_critic_alpha < 1.0:
            raise ValueError(f"target_critic_alpha={self.target_critic_alpha} must lie in [0, 1)")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas={self.betas} must be two numbers in [0, 1)")
        if not self.actor_units or not self.critic_units or min(self.actor_units + self.critic_units) < 1:
            raise ValueError("actor_units and critic_units must be one or more positive layer sizes")


#: ``pwm``: PWM's settings; ``pwm_cpu``: the same with 2 critic passes per update instead of 8 (the
#: critics' minibatch steps are about 85% of an update's arithmetic; 2.5-3x the updates per CPU-second,
#: docs/multitask.md measures both); ``tiny``: small networks and short rollouts for tests.
PWM_PRESETS: dict[str, PWMConfig] = {
    "pwm": PWMConfig(),
    "pwm_cpu": PWMConfig(critic_iterations=2),
    "tiny": PWMConfig(
        horizon=4,
        num_envs=16,
        actor_units=(32, 32),
        critic_units=(32, 32),
        num_critics=2,
        critic_iterations=2,
        critic_batches=2,
    ),
}


def pwm_preset(name: str) -> PWMConfig:
    """The settings of a named preset (``pwm``, ``pwm_cpu`` or ``tiny``)."""
    return PWM_PRESETS[check_choice("pwm preset", name, PWM_PRESETS)]


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
def mish_mlp(in_size: int, units: tuple[int, ...], out_size: int) -> nn.Sequential:
    """``Linear -> LayerNorm -> Mish`` per hidden layer, then a linear output: ``(..., in) -> (..., out)``."""
    layers: list[nn.Module] = []
    size = in_size
    for width in units:
        layers += [nn.Linear(size, width), nn.LayerNorm(width), nn.Mish()]
        size = width
    layers.append(nn.Linear(size, out_size))
    return nn.Sequential(*layers)


class TanhNormal:
    """``tanh(mean + std * eps)``, ``eps ~ N(0, I)``: ``mean, std (..., A)``; samples are
    reparameterised (differentiable in ``mean`` and ``std``); the mode is ``tanh(mean)``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.std = mean, std

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(
            self.mean.shape, dtype=self.mean.dtype, device=self.mean.device, generator=generator
        )
        return torch.tanh(self.mean + self.std * eps)

    def mode(self) -> torch.Tensor:
        return torch.tanh(self.mean)


class PWMActor(nn.Module):
    """A Gaussian policy squashed by tanh: a Mish MLP gives the mean, a learned state-independent
    log-std (bounded below by ``min_logstd``) the spread. ``feat (..., F) -> TanhNormal (..., A)``."""

    def __init__(self, feat_size: int, action_size: int, config: PWMConfig) -> None:
        super().__init__()
        self.net = mish_mlp(feat_size, config.actor_units, action_size)
        self.logstd = nn.Parameter(torch.full((action_size,), config.init_logstd))
        self.min_logstd = config.min_logstd

    def forward(self, feat: torch.Tensor) -> TanhNormal:
        mean = self.net(feat)
        std = self.logstd.clamp(min=self.min_logstd).exp().expand_as(mean)
        return TanhNormal(mean, std)


class CriticEnsemble(nn.Module):
    """``num_critics`` Mish MLPs: ``feat (..., F) -> values (K, ...)``."""

    def __init__(self, feat_size: int, config: PWMConfig) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            mish_mlp(feat_size, config.critic_units, 1) for _ in range(config.num_critics)
        )

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(feat).squeeze(-1) for member in self.members])


# ----------------------------------------------------------------------------------------------
# The learner
# ----------------------------------------------------------------------------------------------
class PWMLearner(nn.Module):
    """The actor, the critic ensemble and its targets for one task of a world model (see the module
    docstring). ``action_low``/``action_high (A,)``: the env's action range (default [-1, 1]);
    ``total_updates``: the length of the linear learning-rate decay."""

    def __init__(
        self,
        config: PWMConfig,
        world_model: WorldModel,
        action_low: torch.Tensor | None = None,
        action_high: torch.Tensor | None = None,
        total_updates: int = 1,
    ) -> None:
        super().__init__()
        io = world_model.io
        if io.discrete:
            raise ValueError("PWM learns continuous-action policies: this world model's actions are discrete")
        self.config = config
        feat = world_model.config.rssm.feat_size
        self.actor = PWMActor(feat, io.action_size, config)
        self.critic = CriticEnsemble(feat, config)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.action_low: torch.Tensor
        self.action_high: torch.Tensor
        low = action_low if action_low is not None else -torch.ones(io.action_size)
        high = action_high if action_high is not None else torch.ones(io.action_size)
        self.register_buffer("action_low", low.float().reshape(io.action_size))
        self.register_buffer("action_high", high.float().reshape(io.action_size))
        betas = (config.betas[0], config.betas[1])
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), config.actor_lr, betas)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), config.critic_lr, betas)
        decay = max(int(total_updates), 1)

        def factor(step: int) -> float:
            return max(1.0 - step / decay, 0.0) if config.lr_schedule == "linear" else 1.0

        self.schedules = [
            torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in (self.actor_opt, self.critic_opt)
        ]

    # ------------------------------------------------------------------ acting
    def to_model_action(self, action: torch.Tensor) -> torch.Tensor:
        """Actor output in (-1, 1) -> the env's action range (what the world model was trained on)."""
        return self.action_low + (action + 1.0) * 0.5 * (self.action_high - self.action_low)

    @torch.no_grad()
    def act(self, feat: torch.Tensor, mode: bool = False) -> torch.Tensor:
        """Env-range actions ``(B, A)`` for features ``(B, F)``."""
        policy = self.actor(feat)
        return self.to_model_action(policy.mode() if mode else policy.sample())

    # ------------------------------------------------------------------ imagination
    def imagine(
        self, world_model: WorldModel, start: State
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 1: ``H`` differentiable steps from ``start (N, ...)``. Returns ``feat (H+1, N, F)``,
        ``reward (H+1, N)`` and ``cont (H+1, N)`` (index 0, the start, has reward 0 and cont 1)."""
        state = start
        feats, rewards, conts = [start.feat], [], []
        for _ in range(self.config.horizon):
            feat = state.feat.detach() if self.config.detach else state.feat
            action = self.actor(feat).sample()
            state, reward, cont = world_model.step(state, self.to_model_action(action))
            feats.append(state.feat)
            rewards.append(reward)
            conts.append(cont)
        zero = torch.zeros_like(rewards[0])
        return torch.stack(feats), torch.stack([zero, *rewards]), torch.stack([torch.ones_like(zero), *conts])

    # ------------------------------------------------------------------ learning
    def train_step(self, world_model: WorldModel, start: State) -> dict[str, torch.Tensor]:
        """One actor update and the critic's passes from start states ``start (N, ...)`` (detached
        here). The world model's parameters are not changed (nor need gradients)."""
        c = self.config
        start = start.map(lambda t: t.detach())
        feat, reward, cont = self.imagine(world_model, start)  # (H+1, N, ...)
        horizon = c.horizon
        # step 2: J = 1/(N H) sum [ sum_t gamma^t w_t r_{t+1} + gamma^H w_H V'(s_H) ]
        weight = torch.cumprod(cont, 0).detach()  # w_t = prod_{k<=t} c_k, (H+1, N)
        discount = c.gamma ** torch.arange(horizon + 1, device=feat.device, dtype=feat.dtype)[:, None]
        bootstrap = self.target_critic(feat[-1]).min(0).values  # its parameters need no gradients
        imagined = (discount[:-1] * weight[:-1] * reward[1:]).sum(0)
        objective = imagined + discount[-1] * weight[-1] * bootstrap
        actor_loss = -objective.mean() / horizon
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), c.actor_grad_norm)
        self.actor_opt.step()

        # step 3: TD(lambda) targets on the detached trajectory
        with torch.no_grad():
            feat = feat.detach()
            values = self.target_critic(feat).min(0).values  # (H+1, N)
            targets = lambda_returns(reward.detach(), values, c.gamma * cont.detach(), c.lambda_)  # (H, N)
        # step 4: critic minibatches
        inputs, goals = feat[:-1].reshape(-1, feat.shape[-1]), targets.reshape(-1)
        critic_losses = []
        critic_norm = torch.zeros(())
        size = max(len(goals) // c.critic_batches, 1)
        for _ in range(c.critic_iterations):
            order = torch.randperm(len(goals), device=goals.device)
            for first in range(0, size * c.critic_batches, size):
                rows = order[first : first + size]
                predicted = self.critic(inputs[rows])  # (K, b)
                critic_loss = (predicted - goals[rows]).pow(2).mean(-1).sum()
                self.critic_opt.zero_grad(set_to_none=True)
                critic_loss.backward()
                critic_norm = nn.utils.clip_grad_norm_(self.critic.parameters(), c.critic_grad_norm)
                self.critic_opt.step()
                critic_losses.append(critic_loss.detach())
        # step 5: the target critics follow
        self.update_target()
        for schedule in self.schedules:
            schedule.step()
        return {
            "actor_loss": actor_loss.detach(),
            "imag_return": imagined.detach().mean(),
            "imag_reward": reward[1:].detach().mean(),
            "bootstrap": bootstrap.detach().mean(),
            "critic_loss": torch.stack(critic_losses).mean() / c.num_critics,
            "actor_grad_norm": actor_norm.detach(),
            "critic_grad_norm": critic_norm.detach(),
            "actor_std": self.actor.logstd.clamp(min=c.min_logstd).exp().mean().detach(),
        }

    @torch.no_grad()
    def update_target(self) -> None:
        """``phi' <- alpha phi' + (1 - alpha) phi`` for every target critic parameter."""
        alpha = self.config.target_critic_alpha
        for target, source in zip(self.target_critic.parameters(), self.critic.parameters(), strict=True):
            target.mul_(alpha).add_(source, alpha=1.0 - alpha)


# ----------------------------------------------------------------------------------------------
# Bundles
# ----------------------------------------------------------------------------------------------
def policy_for_bundle(
    learner: PWMLearner, task: str | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The actor's weights and JSON config, as :func:`wmsim.save_bundle` stores them."""
    tensors = {f"actor.{k}": v for k, v in learner.actor.state_dict().items()}
    tensors["action_low"], tensors["action_high"] = learner.action_low, learner.action_high
    return tensors, {"kind": POLICY_KIND, "task": task, "pwm": to_dict(learner.config)}


def learner_from_bundle(bundle: Bundle, device: torch.device | str = "cpu") -> tuple[Bundle, PWMLearner]:
    """The bundle of the policy's task (the bundle itself when single-task) and the PWM actor saved in
    it (the critics start fresh). Raises ValueError when the bundle holds no PWM policy."""
    where = f"bundle {bundle.path}" if bundle.path else "the bundle"
    config = bundle.policy_config or {}
    if bundle.policy_tensors is None or config.get("kind") != POLICY_KIND:
        raise ValueError(
            f"{where} holds no PWM policy (kind {config.get('kind')!r}): train one with"
            " `wmsim train --dream BUNDLE --learner pwm`"
        )
    task = config.get("task")
    bound = bundle_for_task(bundle, task) if task is not None else bundle
    try:
        settings = from_dict(PWMConfig, config.get("pwm", {}), path=".policy.pwm")
    except ValueError as exc:
        raise ValueError(f"{where}: policy config is invalid ({exc})") from exc
    tensors = bundle.policy_tensors
    learner = PWMLearner(settings, bound.model, tensors.get("action_low"), tensors.get("action_high"))
    actor = {k[len("actor.") :]: v for k, v in tensors.items() if k.startswith("actor.")}
    try:
        learner.actor.load_state_dict(actor, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{where}: policy.safetensors does not fit its config ({str(exc)[:200]})") from exc
    return bound, learner.to(device).eval()


def real_env_policy(
    bundle: Bundle, learner: PWMLearner, *, mode: bool = True, seed: int = 0
) -> tuple[Any, RealEnvPolicy]:
    """The real env of a (task's) bundle and the learner's actor acting on posterior states of its
    observations (:class:`agents.dreamerv2.RealEnvPolicy`)."""
    env = make_env(bundle.env_spec, seed=seed)
    device = next(learner.parameters()).device
    policy = RealEnvPolicy(
        bundle.model.to(device),
        learner.actor,
        env.action_space,
        learner.to_model_action,
        mode=mode,
        seed=seed,
    )
    return env, policy


@torch.no_grad()
def real_returns(bundle: Bundle, learner: PWMLearner, episodes: int = 5, seed: int = 10_000) -> list[float]:
    """Returns of the actor's mode in ``episodes`` real episodes (seeds ``seed, seed + 1, ...``)."""
    env, policy = real_env_policy(bundle, learner, seed=seed)
    try:
        return play_episodes(env, policy.act, episodes, seed, on_reset=policy.reset)
    finally:
        env.close()


# ----------------------------------------------------------------------------------------------
# Training in a dream
# ----------------------------------------------------------------------------------------------
#: What :func:`train_pwm` returns (the dream loop's result).
PWMResult = DreamTrainResult


class _PWMDreamLearner:
    """:class:`PWMLearner` as the dream loop's :class:`~agents.dream_loop.DreamLearner`: ``N =
    num_envs`` starts per update, drawn from the real windows' posterior states or the whole pool."""

    def __init__(self, config: PWMConfig, bundle: Bundle, model: WorldModel, updates: int) -> None:
        low, high = action_bounds(bundle)
        device = next(model.parameters()).device
        self.learner = PWMLearner(config, model, low, high, total_updates=updates).to(device)
        self.horizon = config.horizon
        self.num_envs = config.num_envs

    def update(self, model: WorldModel, starts: State, is_terminal: torch.Tensor) -> dict[str, torch.Tensor]:
        if starts.deter.dim() == 3:  # real windows (B, T, ...): N of their posterior states
            flat = starts.map(lambda t: t.reshape(-1, *t.shape[2:]))
            rows = torch.randint(len(flat.deter), (self.num_envs,), device=flat.deter.device)
            starts = State(flat.deter[rows], flat.stoch[rows], flat.logits[rows])
        self.learner.train()
        return self.learner.train_step(model, starts)

    def dream_action(self, feat: torch.Tensor) -> torch.Tensor:
        return self.learner.act(feat)

    def evaluate(self, bundle: Bundle, episodes: int) -> dict[str, float]:
        return {"real_return": float(np.mean(real_returns(bundle, self.learner, episodes)))}

    def policy(self, task: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return policy_for_bundle(self.learner, task)

    def describe(self) -> dict[str, Any]:
        return {"learner": "pwm", "pwm": to_dict(self.learner.config)}


def train_pwm(
    bundle: Bundle,
    config: PWMConfig,
    *,
    task: str | None = None,
    updates: int = 1000,
    replay: str | Path | None = None,
    batch_size: int = 16,
    seq_len: int = 32,
    out: str | Path | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
    eval_every: int = 0,
    eval_episodes: int = 5,
) -> PWMResult:
    """Learn ``task``'s policy (a task of a multi-task bundle; None for a single-task one) with
    ``updates`` PWM updates in ``bundle``'s world model and write the bundle with the policy to ``out``
    (default: the bundle's own directory). Starts come from a pool of ``config.num_envs`` dreamed
    episodes, or from posterior states of ``batch_size`` x ``seq_len`` real steps of ``replay`` (a
    replay directory of the task's env), in the dream loop of :mod:`agents.dream_loop`. With
    ``eval_every``, every that many updates (and at the end) the actor's mode plays ``eval_episodes``
    real episodes: the result's ``curve``."""
    return train_in_dream(
        bundle,
        lambda bound, model: _PWMDreamLearner(config, bound, model, updates),
        updates=updates,
        pool=config.num_envs,
        replay=replay,
        batch_size=batch_size,
        seq_len=seq_len,
        out=out,
        device=device,
        seed=seed,
        progress=progress,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        task=task,
    )
