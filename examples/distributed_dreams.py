"""Dreams across GPUs: one DreamVectorEnv per rank on the rank's own device, the aggregate dreamed
steps/s of the job, and DreamerV2's actor-critic learning data-parallel in the dreams.

    # CPU smoke test (a random tiny CartPole model, seconds):
    torchrun --standalone --nproc_per_node=2 examples/distributed_dreams.py --smoke
    # every GPU of a node, a trained bundle:
    torchrun --standalone --nproc_per_node=8 examples/distributed_dreams.py --model runs/pong/bundle \\
        --num-envs 4096 --agent-preset atari --updates 1000

Rank r dreams ``--num-envs`` episodes on ``cuda:LOCAL_RANK`` (or the CPU) from its own seed, steps them
with the actor, and reports its steps/s; the sum over the ranks (an all-reduce) is the job's figure.
With ``--updates``, every rank imagines from its own dreamed states and the actor-critic's gradients
are averaged over the ranks (agents.distributed.GradientSync), so the policy stays identical
everywhere: a batch ``world_size`` times larger per update, as in data-parallel world-model training.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import torch

from agents.distributed import Dist, GradientSync, launch, parameter_digest
from agents.dreamerv2 import ActorCritic, agent_preset
from wmsim.dream import DreamVectorEnv


def smoke_bundle() -> str:
    """A randomly initialised tiny CartPole world model, saved as a bundle in a temporary folder."""
    from wmsim.bundle import encode_start_states, save_bundle
    from wmsim.config import model_preset
    from wmsim.envs import EnvSpec, describe_spaces, make_env
    from wmsim.world_model import IOSpec, WorldModel

    env = make_env("CartPole-v1")
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    torch.manual_seed(0)
    model = WorldModel(model_preset("tiny"), io)
    obs = torch.stack([torch.as_tensor(env.reset(seed=i)[0]) for i in range(16)])
    folder = tempfile.mkdtemp(prefix="wmsim-smoke-")
    starts = encode_start_states(model, obs)
    save_bundle(folder, model, EnvSpec.from_id("CartPole-v1"), describe_spaces(env), starts)
    return folder


def make_agent(env: DreamVectorEnv, preset: str, dist: Dist) -> tuple[ActorCritic, GradientSync | None]:
    """The actor-critic on the rank's device, with rank 0's initial weights and averaged gradients."""
    space = env.single_action_space
    low = torch.as_tensor(space.low) if hasattr(space, "low") else None
    high = torch.as_tensor(space.high) if hasattr(space, "high") else None
    agent = ActorCritic(agent_preset(preset), env.sim.model, low, high).to(env.device)
    dist.broadcast_module(agent)
    return agent, GradientSync(agent.parameters(), dist) if dist.enabled else None


@torch.no_grad()
def dream(env: DreamVectorEnv, agent: ActorCritic, steps: int) -> float:
    """Step every dream ``steps`` times with the actor; returns this rank's dreamed steps/s."""
    start = time.perf_counter()
    for _ in range(steps):
        action = agent.act(env.sim.feat)
        env.step_tensor(action.argmax(-1) if env.sim.model.io.discrete else action)
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    return steps * env.num_envs / (time.perf_counter() - start)


def learn(env: DreamVectorEnv, agent: ActorCritic, updates: int) -> dict[str, float]:
    """DreamerV2 behaviour learning from the dreams' current states, advancing them between updates."""
    metrics: dict[str, torch.Tensor] = {}
    for _ in range(updates):
        metrics = agent.train_step(env.sim.model, env.sim.state)
        dream(env, agent, agent.config.horizon)
    return {k: float(v) for k, v in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default=None, help="a bundle directory or model name")
    parser.add_argument("--smoke", action="store_true", help="a random tiny CartPole model, few steps")
    parser.add_argument("--num-envs", type=int, default=None, help="dreams per rank (default 1024; smoke 64)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 200; smoke 20)")
    parser.add_argument("--updates", type=int, default=None, help="actor-critic updates (smoke: 2)")
    parser.add_argument("--agent-preset", default=None, help="actor-critic sizes (default small; smoke tiny)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (each rank: cuda:LOCAL_RANK)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if (args.model is None) == (not args.smoke):
        parser.error("pass --model <bundle> or --smoke")
    num_envs = args.num_envs or (64 if args.smoke else 1024)
    steps = args.steps or (20 if args.smoke else 200)
    updates = args.updates if args.updates is not None else (2 if args.smoke else 0)
    preset = args.agent_preset or ("tiny" if args.smoke else "small")
    with launch(args.device, timeout_s=600) as dist:
        model = dist.on_main(smoke_bundle) if args.smoke else args.model
        env = DreamVectorEnv(model, num_envs, device=dist.device or args.device, seed=dist.seed(args.seed))
        env.reset_tensor(seed=dist.seed(args.seed))
        agent, _sync = make_agent(env, preset, dist)
        mine = dream(env, agent, steps)
        total = dist.sum(mine)
        report = learn(env, agent, updates) if updates else {}
        identical = len(set(dist.gather(parameter_digest(agent)))) == 1
        if dist.is_main:
            print(
                f"{dist.world_size} rank(s) x {num_envs} dreams on {env.device.type}: {total:,.0f} dreamed"
                f" steps/s in all ({mine:,.0f} on rank 0)"
            )
            if updates:
                print(
                    f"{updates} data-parallel actor-critic updates: imagined return"
                    f" {report['imag_return']:.3f}; weights identical on every rank: {identical}"
                )
        dist.barrier()
        if args.smoke and dist.is_main:
            shutil.rmtree(model, ignore_errors=True)


if __name__ == "__main__":
    main()
