"""``wmsim play`` (a dream in a window, driven by the keyboard) and ``wmsim watch`` (a policy plays the
dream and the real env side by side, written as a video). The views live in :mod:`wmsim.play`; this
module parses the options and builds the policies (the bundle's DreamerV2 actor or an SB3 zip)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from wmsim.config import int_at_least

Handler = Callable[[argparse.Namespace], int]


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    p = sub.add_parser(
        "play",
        help="play a world model's dream in a window with the keyboard",
        description="Open a window on MODEL's dream: arrows/space (Atari: by the game's action meanings),"
        " digits for discrete actions by index, arrows and a/d s/w j/l k/i for continuous dimensions."
        " Keys: r reset, p pause, . step, v record a video, f dream from the real frame, esc quit."
        " Needs a display; without one use `wmsim watch`.",
    )
    p.add_argument("model", help="a bundle directory or a known model name")
    p.add_argument("--side-by-side", action="store_true", help="run the real env beside the dream")
    p.add_argument("--from-real", action="store_true", help="start dreams from the real env's frame")
    p.add_argument("--num-envs", type=int_at_least(1), default=1, help="dreams shown together (default 1)")
    p.add_argument("--fps", type=float, default=None, help="frame-rate cap (default: the real game's)")
    p.add_argument("--scale", type=int, default=None, help="pixel upscaling of image observations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--record-dir", default=".", help="where the v key writes its videos")
    p.add_argument("--format", default="mp4", choices=["mp4", "gif"], help="video format of recordings")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")

    w = sub.add_parser(
        "watch",
        help="a policy plays the dream and the real env side by side; writes a video",
        description="Let a policy (the bundle's DreamerV2 actor, an SB3 zip, or random) play MODEL's dream"
        " and the real env beside it, and write the frames with rewards and returns to --out (MP4 or"
        " GIF). Works without a display.",
    )
    w.add_argument("model", help="a bundle directory or a known model name")
    w.add_argument(
        "--policy",
        default="bundle",
        help="'bundle' (the bundle's DreamerV2 actor, default), 'random', or an SB3 model .zip (SB3"
        " unpickles it, so a crafted zip runs code: load only zips you trust)",
    )
    w.add_argument("--algo", default="PPO", help="the SB3 algorithm of a --policy zip (SAC is detected)")
    w.add_argument(
        "--obs-mode",
        default="auto",
        choices=["auto", "latent", "pixels"],
        help="what an SB3 policy observes (auto: from its observation space)",
    )
    w.add_argument(
        "--real-actions",
        default="own",
        choices=["own", "same"],
        help="own: the policy acts on the real observations too; same: the real env replays the dream's"
        " actions (random play always does)",
    )
    w.add_argument(
        "--steps", type=int_at_least(1), default=500, help="steps to play (the video has steps + 1 frames)"
    )
    w.add_argument("--out", default="watch.mp4", help="the video (.mp4 or .gif)")
    w.add_argument("--fps", type=float, default=None, help="video frame rate (default: the real game's)")
    w.add_argument("--dream-only", action="store_true", help="no real env beside the dream")
    w.add_argument("--from-real", action="store_true", help="start dreams from the real env's frame")
    w.add_argument("--num-envs", type=int_at_least(1), default=1, help="dreams shown together (default 1)")
    w.add_argument("--scale", type=int, default=None, help="pixel upscaling of image observations")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--sample", action="store_true", help="sample actions instead of the policy's mode")
    w.add_argument(
        "--window",
        default="auto",
        choices=["auto", "on", "off"],
        help="show the frames live too (auto: when a display is available)",
    )
    w.add_argument("--device", default="cpu")
    return {"play": cmd_play, "watch": cmd_watch}


def cmd_play(args: argparse.Namespace) -> int:
    from wmsim.play.player import NoDisplayError, play

    try:
        result = play(
            args.model,
            side_by_side=args.side_by_side,
            from_real=args.from_real,
            num_envs=args.num_envs,
            fps=args.fps,
            scale=args.scale,
            seed=args.seed,
            device=args.device,
            record_dir=args.record_dir,
            video_format=args.format,
            max_frames=args.max_frames,
        )
    except NoDisplayError as exc:
        print(f"wmsim play: error: {exc}", file=sys.stderr)
        return 2
    print(f"played {result.steps} steps ({result.frames} frames)")
    for path in result.videos:
        print(f"video: {path}")
    return 0


class _Adapter:
    """A policy callable ``obs -> action`` with a ``reset()`` hook."""

    def __init__(self, act: Callable[[Any], Any], reset: Callable[[], None] | None = None) -> None:
        self._act, self._reset = act, reset

    def __call__(self, obs: Any) -> Any:
        return self._act(obs)

    def reset(self) -> None:
        if self._reset is not None:
            self._reset()


def build_policies(args: argparse.Namespace, bundle: Any) -> tuple[Any, Any, str]:
    """``(dream policy, real policy, policy_obs)`` for ``--policy``; a None policy plays random actions,
    a None real policy replays the dream's actions in the real env."""
    import gymnasium as gym
    import torch

    from wmsim.envs import space_from_dict
    from wmsim.play.session import LatentFilterPolicy

    mode = not args.sample
    space = space_from_dict(bundle.spaces["action"])
    if args.policy == "random":
        return None, None, "pixels"
    if args.policy == "bundle":
        from ..dreamerv2 import RealEnvPolicy, agent_from_bundle

        try:
            agent = agent_from_bundle(bundle, args.device)
        except ValueError as exc:
            raise ValueError(
                f"{exc}; or watch another policy: --policy random or --policy model.zip"
            ) from exc
        device = next(agent.parameters()).device

        def in_dream(feat: np.ndarray) -> Any:
            action = agent.act(torch.as_tensor(feat, device=device)[None], mode=mode)[0]
            if isinstance(space, gym.spaces.Discrete):
                return int(action.argmax()) + int(space.start)
            assert isinstance(space, gym.spaces.Box)
            return np.clip(action.cpu().numpy(), space.low, space.high).astype(np.float32)

        real = RealEnvPolicy(bundle.model.to(device), agent.actor, space, agent.to_model_action, mode=mode)
        return in_dream, _Adapter(real.act, real.reset), "latent"
    from ..evaluation import load_sb3
    from ..sb3 import ALGORITHMS

    sb3 = load_sb3(args.policy, args.algo, ALGORITHMS)
    obs_mode = args.obs_mode
    if obs_mode == "auto":
        latent = bundle.model.config.rssm.feat_size
        obs_mode = "latent" if tuple(sb3.observation_space.shape or ()) == (latent,) else "pixels"

    def predict(obs: np.ndarray) -> Any:
        return sb3.predict(obs, deterministic=mode)[0]

    real_policy: Any = (
        predict if obs_mode == "pixels" else LatentFilterPolicy(bundle, predict, seed=args.seed)
    )
    return predict, real_policy, obs_mode


def cmd_watch(args: argparse.Namespace) -> int:
    from wmsim.play.player import NoDisplayError, display_problem, require_display
    from wmsim.play.watcher import watch
    from wmsim.registry import resolve_model

    bundle = resolve_model(args.model)
    policy, real_policy, policy_obs = build_policies(args, bundle)
    if args.real_actions == "same":
        real_policy = None
    if args.window == "on":
        try:
            require_display("wmsim watch --window on")
        except NoDisplayError as exc:
            print(f"wmsim watch: error: {exc} (or leave out --window on)", file=sys.stderr)
            return 2
    window = args.window == "on" or (args.window == "auto" and display_problem() is None)
    result = watch(
        bundle,
        policy,
        real_policy=real_policy,
        out=args.out,
        steps=args.steps,
        fps=args.fps,
        side_by_side=not args.dream_only,
        from_real=args.from_real,
        num_envs=args.num_envs,
        policy_obs=policy_obs,
        seed=args.seed,
        scale=args.scale,
        device=args.device,
        window=window,
    )
    print(f"wrote {result.path} ({result.frames} frames at {result.fps:g} fps)")
    for i, returns in enumerate(result.dream_returns):
        print(f"dream {i}: finished episode returns {_fmt(returns)}")
    if not args.dream_only:
        print(f"real: finished episode returns {_fmt(result.real_returns)}")
    return 0


def _fmt(returns: list[float]) -> str:
    return "[" + ", ".join(f"{r:.2f}" for r in returns) + "]" if returns else "none (still running)"
