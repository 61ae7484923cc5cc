"""Dream on onnxruntime: export a bundle's world model to ONNX, then step it without torch.

    python examples/onnx_dream.py runs/cartpole/bundle      # a trained bundle (exported if it has no graphs)
    python examples/onnx_dream.py --smoke                   # a tiny random CartPole model, a few steps (CI)

1. Export: `wmsim export-onnx BUNDLE` writes BUNDLE/onnx/*.onnx and records them in BUNDLE/config.json
   (torch is needed for this step only).
2. Dream: `gym.make_vec(env_id, num_envs, backend="onnxruntime")` steps the graphs with numpy arrays;
   the bundle's policy, when exported, acts through `OrtPolicy`.
3. Proof: a child Python in which `import torch` fails makes and steps the same dream.
4. Speed: the same dream on the torch backend, for comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import wmsim


def tiny_bundle(folder: Path) -> Path:
    """A randomly initialised tiny CartPole world model (the dream API does not care that it is untrained)."""
    import torch

    from wmsim.bundle import encode_start_states, save_bundle
    from wmsim.config import model_preset
    from wmsim.envs import describe_spaces, env_spec_of, make_env
    from wmsim.world_model import IOSpec, WorldModel

    env = make_env("CartPole-v1")
    torch.manual_seed(0)
    model = WorldModel(model_preset("tiny"), IOSpec.from_spaces(env.observation_space, env.action_space))
    first = torch.as_tensor(np.stack([env.reset(seed=i)[0] for i in range(8)]))
    return save_bundle(
        folder, model, env_spec_of(env), describe_spaces(env), encode_start_states(model, first)
    )


def run_dream(env_id: str, backend: str, num_envs: int, steps: int, policy: object | None = None) -> float:
    """Step ``num_envs`` dreams for ``steps`` steps; returns env steps per second."""
    vec = gym.make_vec(env_id, num_envs=num_envs, backend=backend, device="cpu", seed=0)
    obs, _ = vec.reset(seed=0)
    vec.action_space.seed(0)
    total, ended = 0.0, 0
    start = time.perf_counter()
    for _ in range(steps):
        actions = policy(obs) if policy is not None else vec.action_space.sample()  # type: ignore[operator]
        obs, reward, terminated, truncated, _ = vec.step(actions)
        total += float(reward.sum())
        ended += int((terminated | truncated).sum())
    rate = num_envs * steps / (time.perf_counter() - start)
    vec.close()
    print(
        f"  {backend:>11}: {rate:>9,.0f} steps/s, mean reward {total / (num_envs * steps):+.3f},"
        f" {ended} episodes ended"
    )
    return rate


TORCH_FREE = """
import sys

class NoTorch:  # make `import torch` fail, as on a machine without it
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch here")

sys.meta_path.insert(0, NoTorch())
import gymnasium as gym
import wmsim

env_id = wmsim.register_dream("TorchFree", sys.argv[1], backend="onnxruntime", device="cpu")
env = gym.make(env_id, obs_mode="decoded")
obs, _ = env.reset(seed=0)
for _ in range(10):
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    if terminated or truncated:
        obs, _ = env.reset()
loaded = [m for m in sys.modules if m.startswith("torch")]
print("stepped a dream with torch absent; torch modules loaded:", loaded)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "bundle", nargs="?", default=None, help="a bundle directory (default: a tiny random one)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (seconds), for CI")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    num_envs, steps = (8, 20) if args.smoke else (args.num_envs, args.steps)

    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(args.bundle) if args.bundle else tiny_bundle(Path(scratch) / "bundle")

        # 1. Export (once per bundle; the CLI does the same: `wmsim export-onnx BUNDLE`).
        config = json.loads((bundle / "config.json").read_text())
        if "onnx" not in config:
            from agents.onnx_policy import policy_module
            from wmsim.onnx_export import export_onnx, format_record

            print(f"exporting {bundle} to ONNX ...")
            print(format_record(export_onnx(bundle, policy_exporter=policy_module)))
        else:
            print(f"{bundle} already has ONNX graphs: {', '.join(config['onnx']['graphs'])}")

        # 2. Dream on onnxruntime, with the bundle's policy when it has one.
        env_id = wmsim.register_dream("OnnxExample", str(bundle))
        from wmsim.dream.ort import OrtModel, OrtPolicy

        model = OrtModel(bundle, device="cpu")
        policy = OrtPolicy(model, seed=0) if model.has_graph("policy") else None
        print(
            "acting with the bundle's policy (policy.onnx)" if policy else "no policy graph: random actions"
        )
        print(f"{num_envs} dreams x {steps} steps:")
        run_dream(env_id, "onnxruntime", num_envs, steps, policy)

        # 3. The same dream in a Python where torch cannot be imported.
        done = subprocess.run([sys.executable, "-c", TORCH_FREE, str(bundle)], capture_output=True, text=True)
        print((done.stdout or done.stderr).strip().splitlines()[-1])
        if done.returncode != 0:
            raise SystemExit(done.stderr)

        # 4. The torch backend on the same model, for comparison.
        run_dream(env_id, "torch", num_envs, steps)


if __name__ == "__main__":
    main()
