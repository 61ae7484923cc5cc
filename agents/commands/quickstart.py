"""``wmsim quickstart``: PPO trained only in a shipped dream, evaluated in the real game."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from wmsim.config import add_config_arguments, apply_overrides, flat_items


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    from ..quickstart import QuickstartConfig

    p = sub.add_parser(
        "quickstart",
        help="train PPO inside a shipped world model, then play it in the real game (no network)",
        description="Train Stable-Baselines3 PPO only inside the dream of a pretrained model, evaluate it"
        " in the real env against a random policy, and write a learning curve and a dream-vs-real GIF.",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(p, QuickstartConfig)
    return {"quickstart": run}


def run(args: argparse.Namespace) -> int:
    from ..quickstart import QuickstartConfig, format_result, run_quickstart

    config = QuickstartConfig()
    overrides = {k: getattr(args, k) for k in flat_items(config) if getattr(args, k, None) is not None}
    result = run_quickstart(apply_overrides(config, overrides), progress=not args.quiet)
    print(format_result(result))
    return 0
