"""DreamerV2's behaviour learning: an actor and a critic trained purely on imagined latent rollouts.

One update (:meth:`ActorCritic.train_step`), top to bottom as in the paper (section 2.2):

1. start from every posterior state of the world-model batch, ``N = B * T`` of them;
2. imagine ``H`` steps with the actor: ``a_t ~ pi(a | sg(s_t))``, ``s_{t+1} = WorldModel.step(s_t, a_t)``
   (the latent transition the dream environments use, here with gradients);
3. predict rewards ``r_t`` and discounts ``c_t = gamma * P(continue)`` along the trajectory;
4. lambda-returns ``R_t`` from the slow target critic;
5. actor loss: ``-weight_t * (rho * R_t  [dynamics]  +  (1 - rho) * log pi(a_t) * sg(R_t - v(s_t))
   [REINFORCE]  +  eta * H[pi(s_t)])``, with ``weight_t = prod_{k<=t} c_k`` (stop-gradient);
6. critic loss: ``weight_t * (v(s_t) - sg(R_t))^2 / 2``;
7. every ``slow_target_update`` updates the target critic is moved to the critic.

The lambda-return ``R_t`` counts the rewards *after* ``s_t`` (``R_t = r_{t+1} + c_{t+1} (...)``): it is
the value of the action taken at ``s_t``, which matters only while ``s_0 .. s_t`` are all non-terminal,
hence the weight's product up to and including ``c_t``. The first discount ``c_0`` comes from the
data's ``is_terminal`` of the start state when the caller has it (as in the official code), otherwise
from the discount head.

Only the actor's and the critic's parameters change: the world model is frozen during the update.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from wmsim.bundle import Bundle
from wmsim.config import from_dict, to_dict
from wmsim.nn import dreamer_adam
from wmsim.rssm import State
from wmsim.world_model import WorldModel, resolve_precision

from .config import ActorCriticConfig
from .networks import Actor, Critic
from .returns import lambda_returns


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients into ``module``'s parameters (inputs still get gradients)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class ActorCritic(nn.Module):
    """DreamerV2's actor, critic and slow target critic for one world model.

    Actions: the actor works in a normalised space (one-hot for discrete, (-1, 1) for continuous);
    :meth:`to_model_action` maps it to what the world model was trained on (the env's action range).
    """

    def __init__(
        self,
        config: ActorCriticConfig,
        world_model: WorldModel,
        action_low: torch.Tensor | None = None,
        action_high: torch.Tensor | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        self.config = config
        self.precision = resolve_precision(precision, torch.device("cpu"))
        io = world_model.io
        feat, segments = world_model.config.rssm.feat_size, world_model.config.rssm.feat_segments
        self.discrete = io.discrete
        self.actor = Actor(
            feat,
            io.action_size,
            io.discrete,
            config.actor_layers,
            config.actor_units,
            min_std=config.min_std,
            dist=config.actor_dist,
            segments=segments,
        )
        self.critic = Critic(feat, config.critic_layers, config.critic_units, segments)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        low = action_low if action_low is not None else -torch.ones(io.action_size)
        high = action_high if action_high is not None else torch.ones(io.action_size)
        self.action_low: torch.Tensor
        self.action_high: torch.Tensor
        self.register_buffer("action_low", low.float().reshape(io.action_size))
        self.register_buffer("action_high", high.float().reshape(io.action_size))
        self.updates: torch.Tensor
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.gradient = config.gradient(io.discrete)
        self.actor_opt = dreamer_adam(
            self.actor.parameters(), config.actor_lr, config.eps, config.weight_decay
        )
        self.critic_opt = dreamer_adam(
            self.critic.parameters(), config.critic_lr, config.eps, config.weight_decay
        )

    # ------------------------------------------------------------------ acting
    def to_model_action(self, action: torch.Tensor) -> torch.Tensor:
        """Actor output -> the world model's action (env range for continuous actions)."""
        if self.discrete:
            return action
        return self.action_low + (action + 1.0) * 0.5 * (self.action_high - self.action_low)

    @torch.no_grad()
    def act(self, feat: torch.Tensor, mode: bool = False) -> torch.Tensor:
        """Actions for features ``(B, F)``: one-hot ``(B, A)`` or env-range ``(B, A)`` floats."""
        policy = self.actor(feat)
        action = policy.mode() if mode else policy.sample()
        return self.to_model_action(action.detach())

    # ------------------------------------------------------------------ imagination
    def imagine(
        self, world_model: WorldModel, start: State, horizon: int, is_terminal: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Roll the actor out in the world model from ``start (N, ...)`` for ``horizon`` steps.

        Returns ``feat (H+1, N, F)``, ``action (H, N, A)`` (actor space; ``action[t]`` taken at ``s_t``),
        the actor's raw outputs ``(H, N, P)`` at ``s_0 .. s_{H-1}`` (with their graph, so the update
        needs no second actor pass), ``reward (H+1, N)`` and ``discount (H+1, N)``. Index 0 is the start
        state: ``discount[0]`` is ``gamma * (1 - is_terminal)`` when the data's flags
        ``is_terminal (N,)`` are given, else the head's. With REINFORCE gradients the world model
        steps without building a graph (nothing is differentiated through it).
        """
        through_dynamics = self.gradient != "reinforce" and torch.is_grad_enabled()
        gamma = self.config.discount or world_model.config.discount
        state = start
        feats, actions, outputs = [start.feat], [], []
        for _ in range(horizon):
            output = self.actor.net(state.feat.detach())
            action = self.actor.policy(output).sample()
            with torch.set_grad_enabled(through_dynamics):
                model_action = self.to_model_action(action if through_dynamics else action.detach())
                state = world_model.transition(state, model_action)
            feats.append(state.feat)
            actions.append(action)
            outputs.append(output)
        feat = torch.stack(feats)
        # The heads of WorldModel.step, read once on the whole trajectory (H x N rows).
        with torch.set_grad_enabled(through_dynamics):
            reward, cont = world_model.heads(feat[1:])
        if is_terminal is not None:
            first_cont = (1.0 - is_terminal.reshape(1, -1).to(cont.dtype)) * gamma
        else:
            first_cont = world_model.continue_prob(start.feat).unsqueeze(0) * gamma
        reward_0 = torch.zeros_like(reward[:1])
        return (
            feat,
            torch.stack(actions),
            torch.stack(outputs),
            torch.cat([reward_0, reward]),
            torch.cat([first_cont, cont * gamma]),
        )

    # ------------------------------------------------------------------ learning
    def train_step(
        self, world_model: WorldModel, posts: State, is_terminal: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One actor and one critic update from the posterior states ``posts`` (any batch shape), with
        the data's ``is_terminal`` flags of those states (same batch shape) when there are any."""
        c = self.config
        start = posts.map(lambda t: t.detach().reshape(-1, *t.shape[posts.deter.dim() - 1 :]))
        start = State(start.deter, start.stoch, start.logits)
        if is_terminal is not None:
            is_terminal = is_terminal.reshape(-1)
        if 0 < c.imag_starts < len(start.deter):
            chosen = torch.randperm(len(start.deter), device=start.deter.device)[: c.imag_starts]
            start = start.map(lambda t: t[chosen])
            is_terminal = is_terminal[chosen] if is_terminal is not None else None
        autocast = torch.autocast(start.deter.device.type, torch.bfloat16, enabled=self.precision == "bf16")
        with frozen(world_model), autocast:
            feat, action, outputs, reward, discount = self.imagine(world_model, start, c.horizon, is_terminal)
            target_value = self.target_critic(feat).float()
        reward, discount = reward.float(), discount.float()
        returns = lambda_returns(reward, target_value, discount, c.lambda_)  # (H, N)
        weight = torch.cumprod(discount[:-1], 0).detach()  # (H, N): prod_{k<=t} c_k

        policy = self.actor.policy(outputs.float())  # pi(. | s_t) for t < H, from the imagination's pass
        reinforce = policy.log_prob(action.detach().float()) * (returns - target_value[:-1]).detach()
        if self.gradient == "reinforce":
            objective = reinforce
        elif self.gradient == "dynamics":
            objective = returns
        else:
            objective = c.actor_grad_mix * returns + (1.0 - c.actor_grad_mix) * reinforce
        entropy = policy.entropy()
        actor_loss = -(weight * (objective + c.actor_entropy * entropy)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), c.clip)
        self.actor_opt.step()

        with autocast:
            value = self.critic(feat[:-1].detach()).float()
        critic_loss = (weight * 0.5 * (value - returns.detach()).pow(2)).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_norm = nn.utils.clip_grad_norm_(self.critic.parameters(), c.clip)
        self.critic_opt.step()

        self.updates += 1
        if int(self.updates) % c.slow_target_update == 0:
            self.update_target()
        return {
            "actor_loss": actor_loss.detach(),
            "critic_loss": critic_loss.detach(),
            "actor_entropy": entropy.detach().mean(),
            "actor_grad_norm": actor_norm.detach(),
            "critic_grad_norm": critic_norm.detach(),
            "imag_return": returns[0].detach().mean(),
            "imag_reward": reward[1:].detach().mean(),
            "imag_value": value.detach().mean(),
        }

    @torch.no_grad()
    def update_target(self) -> None:
        """Move the slow target critic ``fraction`` of the way to the critic (1.0: copy)."""
        mix = self.config.slow_target_fraction
        for target, source in zip(self.target_critic.parameters(), self.critic.parameters(), strict=True):
            target.mul_(1.0 - mix).add_(source, alpha=mix)


POLICY_KIND = "dreamerv2-actor"


def policy_for_bundle(agent: ActorCritic) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The actor's weights and JSON config, as :func:`wmsim.save_bundle` stores them."""
    tensors = {f"actor.{k}": v for k, v in agent.actor.state_dict().items()}
    tensors["action_low"], tensors["action_high"] = agent.action_low, agent.action_high
    return tensors, {"kind": POLICY_KIND, "actor_critic": to_dict(agent.config)}


def agent_from_bundle(bundle: Bundle, device: torch.device | str = "cpu") -> ActorCritic:
    """Rebuild the bundle's DreamerV2 agent (its actor; the critic starts fresh)."""
    where = f"bundle {bundle.path}" if bundle.path else "the bundle"
    if bundle.policy_tensors is None or bundle.policy_config is None:
        raise ValueError(
            f"{where} holds no policy (no policy.safetensors): train one with"
            " `wmsim train --dream <bundle>` or evaluate an SB3 zip with --sb3"
        )
    if bundle.policy_config.get("kind") != POLICY_KIND:
        raise ValueError(
            f"{where} holds a policy of kind {bundle.policy_config.get('kind')!r}, not {POLICY_KIND!r}"
        )
    try:
        saved = dict(bundle.policy_config["actor_critic"])
        if not bundle.model.io.discrete:  # continuous policies saved before the truncated normal
            saved.setdefault("actor_dist", "tanh_normal")
        config = from_dict(ActorCriticConfig, saved, path=".policy")
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{where}: policy config is invalid ({exc})") from exc
    tensors = bundle.policy_tensors
    agent = ActorCritic(config, bundle.model, tensors.get("action_low"), tensors.get("action_high"))
    actor = {k[len("actor.") :]: v for k, v in tensors.items() if k.startswith("actor.")}
    try:
        agent.actor.load_state_dict(actor, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{where}: policy.safetensors does not fit its config ({str(exc)[:200]})") from exc
    return agent.to(device).eval()
