"""Train a CartPole world model, train Stable-Baselines3 PPO only inside its dream, then play the
result in the real CartPole-v1 next to a random policy.

    python examples/sb3_cartpole_dream.py            # about 3 minutes on 2 CPU cores

The world model sees only random-policy data (5k env steps); PPO never touches the real env while it
learns. Two ways to carry the policy over:
- obs_mode="decoded": the dream hands out decoded observations in the real env's format (CartPole's
  4-d state), so the policy reads true states in the real env (500 +- 0 here);
- obs_mode="latent": the policy reads latent features, and the real env is seen through the world
  model's posterior filter (LatentObservation) (about 250 here).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym

import wmsim
from agents import train, train_preset
from agents.sb3 import evaluate_in_real, train_in_dream


def main() -> None:
    config = dataclasses.replace(
        train_preset("small"), env="CartPole-v1", steps=5000, logdir="runs/example-cartpole"
    )
    result = train(config)  # resumes if the run exists

    # The bundle is now a Gymnasium environment.
    env_id = wmsim.register_dream("MyCartPole", result.bundle)
    dream = gym.make_vec(env_id, num_envs=256)
    obs, _ = dream.reset(seed=0)
    print(f"{env_id}: {dream.num_envs} batched dreams, observations {obs.shape} {obs.dtype}")

    agent = train_in_dream(
        result.bundle,
        algo="PPO",
        total_timesteps=60_000,
        num_envs=16,
        seed=0,
        algo_kwargs={"n_steps": 128, "batch_size": 256, "n_epochs": 4},
        progress_bar=True,
    )
    real = evaluate_in_real(agent, result.bundle, episodes=20)
    random = evaluate_in_real(None, result.bundle, episodes=20)
    print(
        f"real CartPole-v1 over 20 episodes: PPO trained in the dream {real.mean:.1f} +- {real.std:.1f},"
        f" random {random.mean:.1f} +- {random.std:.1f}"
    )


if __name__ == "__main__":
    main()
