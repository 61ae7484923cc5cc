"""Start from a world model on the Hub, learn a policy inside it, and share your own bundle.

    python examples/hub_train_and_push.py --model CartPole --repo-id you/cartpole-policy   # needs a token
    python examples/hub_train_and_push.py --smoke          # everything but the upload (CI, no network)

1. Resolve the model: a pretrained name or `owner/name@revision` (Hub cache, then Hub, then shipped copy).
2. Copy it and train the DreamerV2 actor-critic purely inside its dream (`wmsim train --dream`).
3. Measure the policy in the real env and record the figure for the model card.
4. Write the card and push the bundle (one commit through huggingface_hub; `--tag` pins it).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import hub
from agents.dreamerv2.config import agent_preset
from agents.dreamerv2.dream_train import train_in_world_model
from agents.evaluation import evaluate_policy_in_real
from wmsim.card import record_transfer, write_card
from wmsim.registry import resolve_model, resolve_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="CartPole", help="pretrained name or owner/name[@revision]")
    parser.add_argument("--repo-id", default=None, help="where to push (needs `hf auth login` or HF_TOKEN)")
    parser.add_argument("--out", default="runs/example-hub")
    parser.add_argument("--smoke", action="store_true", help="tiny budget and no upload, for CI")
    args = parser.parse_args()

    source = resolve_model_dir(args.model)
    out = Path(args.out) / "bundle"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("onnx"))
    updates = 5 if args.smoke else 300
    train_in_world_model(resolve_model(out), agent_preset("small"), updates=updates, pool=64, out=out)

    episodes = 2 if args.smoke else 10
    result = evaluate_policy_in_real(out, episodes=episodes, seed=10_000)
    record_transfer(out, "my_policy", f"DreamerV2, {updates} updates in the dream", result["returns"])
    write_card(out, repo_id=args.repo_id)
    print(f"real return {result['mean']:.1f} +- {result['std']:.1f}; files: {hub.bundle_files(out)}")
    if args.repo_id and not args.smoke:
        pushed = hub.upload_bundle(out, args.repo_id, commit_message="DreamerV2 policy trained in the dream")
        print(f"pushed: {pushed.commit_url}")


if __name__ == "__main__":
    main()
