"""Train the built-in DreamerV2 agent on Atari Pong (the paper's setup: 64x64 grayscale, action repeat
4, sticky actions), then look at what its world model learned.

    python examples/train_dreamerv2_pong.py --device cuda   # the paper's preset; needs a GPU and hours
    python examples/train_dreamerv2_pong.py --smoke         # a tiny model for a few hundred steps (CI)

Interrupt it and run it again: it resumes from the last checkpoint. The result is a bundle with the world
model and the policy: `wmsim eval BUNDLE`, `wmsim watch BUNDLE --policy bundle`, `wmsim push BUNDLE ...`.
"""

from __future__ import annotations

import argparse
import dataclasses

from agents import train, train_preset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="tiny model and budget, for CI")
    args = parser.parse_args()

    config = dataclasses.replace(
        train_preset("atari"), env="atari/Pong", device=args.device, logdir="runs/example-pong"
    )
    if args.smoke:
        config = dataclasses.replace(
            train_preset("tiny"),
            env="atari/Pong",
            steps=300,
            prefill=200,
            eval_every=300,
            eval_episodes=1,
            logdir="runs/example-pong-smoke",
        )
    result = train(config, progress=not args.smoke, evaluate=not args.smoke)
    print(f"{result.env_steps} env steps, {result.updates} updates; bundle: {result.bundle}")
    print(f"evaluation returns: {result.eval_returns}")


if __name__ == "__main__":
    main()
