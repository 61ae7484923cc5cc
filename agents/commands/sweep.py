"""``wmsim sweep``: a learning recipe on several seeds, with the per-seed table (see :mod:`agents.sweep`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from wmsim.config import int_at_least


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    from ..sweep import RECIPES

    p = sub.add_parser(
        "sweep",
        help="run a learning recipe on several seeds: per-seed table, mean, std and worst seed -> JSON",
        description="Recipes: " + "; ".join(f"{r.name} ({r.metric})" for r in RECIPES.values()),
    )
    p.add_argument("recipe", choices=sorted(RECIPES), metavar="RECIPE", help="one of: " + ", ".join(RECIPES))
    p.add_argument(
        "--seeds", type=int_at_least(0), nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default 0..4)"
    )
    p.add_argument(
        "--jobs", type=int_at_least(1), default=1, help="seeds run at once (the cores are shared out)"
    )
    p.add_argument("--workdir", default="runs/sweeps", help="where the runs of the recipe are written")
    p.add_argument("--json", default=None, help="results file (default: WORKDIR/RECIPE.json)")
    return {"sweep": run}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..sweep import format_sweep, run_sweep, write_sweep

    result = run_sweep(args.recipe, args.seeds, args.workdir, jobs=args.jobs)
    print(format_sweep(result))
    path = write_sweep(result, args.json or Path(args.workdir) / f"{args.recipe}.json")
    print(f"wrote {path}")
    return 0
