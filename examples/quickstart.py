"""The quickstart in Python: PPO trained only inside a shipped world model, then played in the real game.

    python examples/quickstart.py                 # the shipped CartPole dream (about a minute)
    python examples/quickstart.py --env Pendulum  # a continuous-control dream
    python examples/quickstart.py --smoke         # tiny budgets (CI)

Nothing here needs the network: the model resolves from the Hub cache, the Hub, or the copy shipped with
wmsim, in that order (`wmsim -v models` shows which).
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import wmsim
from agents.quickstart import QuickstartConfig, format_result, run_quickstart


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--env", default="CartPole", help="a pretrained name (CartPole, Pendulum) or a bundle"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny budgets, for CI")
    args = parser.parse_args()

    # 1. The dream is a Gymnasium environment, batched.
    dream = gym.make_vec("wmsim/Dream", num_envs=64, model=args.env)
    obs, _ = dream.reset(seed=0)
    print(f"{args.env} dream: {dream.num_envs} envs, observations {obs.shape}, wmsim {wmsim.__version__}")
    dream.close()

    # 2. PPO in the dream, evaluated in the real env against a random policy.
    config = QuickstartConfig(env=args.env, out=f"runs/example-quickstart-{args.env.lower()}")
    if args.smoke:
        config = QuickstartConfig(env=args.env, steps=2048, num_envs=16, episodes=2, out=config.out)
    result = run_quickstart(config, progress=not args.smoke)
    print(format_result(result))


if __name__ == "__main__":
    main()
