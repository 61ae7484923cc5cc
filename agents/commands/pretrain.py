"""``wmsim pretrain``: fit a world model on an offline dataset gathered by a behaviour policy."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from wmsim.config import add_config_arguments, apply_overrides, flat_items


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    from ..offline import PretrainConfig

    p = sub.add_parser(
        "pretrain",
        help="pretrain a world model on offline data (random, scripted or mixed behaviour)",
        description="Collect --data-steps real steps with a behaviour policy, fit the world model for"
        " --updates steps and write LOGDIR/bundle. Run the same command again to resume.",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--preset", default="small", help="world-model preset: small (default), tiny, atari, ...")
    add_config_arguments(p, PretrainConfig)
    return {"pretrain": run}


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from wmsim.config import model_preset

    from ..offline import OfflinePretrainer, PretrainConfig

    config = dataclasses.replace(PretrainConfig(), model=model_preset(args.preset))
    overrides = {k: getattr(args, k) for k in flat_items(config) if getattr(args, k, None) is not None}
    config = apply_overrides(config, overrides)
    trainer = OfflinePretrainer(config, progress=not args.quiet)
    stats = trainer.collect()
    print(
        f"dataset: {stats['steps']} steps, {stats['episodes']} episodes,"
        f" mean return {stats['episode_return_mean']:.2f}"
    )
    metrics = trainer.fit()
    bundle = trainer.write_bundle()
    loss = f"model_loss {metrics['model_loss']:.4g}" if metrics else "already trained"
    print(f"{trainer.updates} updates ({loss}); bundle: {bundle}")
    return 0
