"""Third-party agents in dreams: Stable-Baselines3 PPO on a discrete dream (CartPole) and SAC on a
continuous one (Pendulum), trained only in the shipped world models, then played in the real envs.

    python examples/sb3_in_dreams.py           # a few minutes on 2 CPU cores
    python examples/sb3_in_dreams.py --smoke   # tiny budgets (CI)

The dream hands out decoded observations in the real env's format (obs_mode="decoded", formerly
"pixels"; for these vector envs that is the state), so the trained policy reads true states in the real
env unchanged.
"""

from __future__ import annotations

import argparse

from agents.sb3 import evaluate_in_real, train_in_dream


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny budgets, for CI")
    args = parser.parse_args()
    runs = [
        ("CartPole", "PPO", 60_000, {"n_steps": 128, "batch_size": 256}),
        ("Pendulum", "SAC", 15_000, {"learning_starts": 1000}),
    ]
    for name, algo, steps, kwargs in runs:
        steps = 600 if args.smoke else steps
        if args.smoke and algo == "SAC":
            kwargs = {"learning_starts": 100}
        agent = train_in_dream(
            name, algo=algo, total_timesteps=steps, num_envs=16, obs_mode="decoded", algo_kwargs=kwargs
        )
        episodes = 2 if args.smoke else 10
        real = evaluate_in_real(agent, name, episodes=episodes, obs_mode="decoded")
        random = evaluate_in_real(None, name, episodes=episodes, obs_mode="decoded")
        print(
            f"{name}: {algo} trained {steps} steps in the dream -> real return"
            f" {real.mean:.1f} +- {real.std:.1f}"
            f" (random {random.mean:.1f} +- {random.std:.1f})"
        )


if __name__ == "__main__":
    main()
