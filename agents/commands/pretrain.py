"""``wmsim pretrain``: fit a world model on an offline dataset gathered by a behaviour policy (or read
from a Minari dataset); ``wmsim add-data`` grows such a dataset, ``wmsim export-dataset`` writes it out
in Minari's format."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from wmsim.config import add_config_arguments, apply_overrides, flat_items, int_at_least

if TYPE_CHECKING:
    from ..offline import PretrainConfig


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    from ..offline import PretrainConfig

    p = sub.add_parser(
        "pretrain",
        help="pretrain a world model on offline data (random, scripted or mixed behaviour)",
        description="Collect --data_steps real steps with a behaviour policy (or, with --dataset, read the"
        " episodes of a Minari dataset), fit the world model for --updates steps and write LOGDIR/bundle."
        " Run the same command again to resume. With --tasks (several env ids) one multi-task model is"
        " fitted on the data of every task (docs/multitask.md).",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--preset", default="small", help="world-model preset: small (default), tiny, atari, ...")
    add_config_arguments(p, PretrainConfig)
    a = sub.add_parser(
        "add-data",
        help="grow a pretraining run's dataset with real episodes of a dream-trained policy",
        description="Play the DreamerV2 policy of BUNDLE in the real env of the pretraining run in LOGDIR"
        " and append the episodes to its dataset, so the model learns from what its policy meets (the"
        " errors a policy finds in the dream). Then run the run's `wmsim pretrain` command again with"
        " a larger --updates to fit on the grown dataset.",
    )
    a.add_argument("logdir", help="the --logdir of a `wmsim pretrain` run")
    a.add_argument("--policy", required=True, metavar="BUNDLE", help="a bundle with a DreamerV2 policy")
    a.add_argument("--steps", type=int_at_least(1), required=True, help="real agent steps to add")
    a.add_argument("--epsilon", type=float, default=0.1, help="probability of a random action per step")
    a.add_argument("--seed", type=int, default=1, help="seed of the first episode and of the exploration")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    e = sub.add_parser(
        "export-dataset",
        help="write a pretraining run's dataset as Minari datasets (one per task)",
        description="Write the offline dataset of the `wmsim pretrain` run in LOGDIR in Minari's format"
        " (Farama's standard for offline RL): DIR becomes a Minari root (MINARI_DATASETS_PATH) holding the"
        " dataset wmsim/<task>/<behaviour>-v0; a multi-task run writes one such root per task, DIR/<task>."
        " `wmsim pretrain --dataset DIR` fits a model on it. Needs the minari package"
        " (pip install 'wmsim[minari]').",
    )
    e.add_argument("logdir", help="the --logdir of a `wmsim pretrain` run")
    e.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder for the dataset(s)")
    return {"pretrain": run, "add-data": run_add_data, "export-dataset": run_export}


def run_export(args: argparse.Namespace) -> int:
    from ..datasets import export_run

    for done in export_run(args.logdir, args.out):
        print(f"{done.task}: {done.dataset_id}, {done.episodes} episodes, {done.steps} steps -> {done.root}")
    return 0


def run_add_data(args: argparse.Namespace) -> int:
    from ..aggregate import add_policy_data

    record = add_policy_data(
        args.logdir, args.policy, args.steps, epsilon=args.epsilon, seed=args.seed, progress=not args.quiet
    )
    print(
        f"added {record['steps']} steps ({record['episodes']} episodes, mean return"
        f" {record['episode_return_mean']:.2f}, {record['random_actions']} random actions) to"
        f" {args.logdir}; fit on them with the run's `wmsim pretrain` command and a larger --updates"
    )
    return 0


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """The ``--preset`` model with every option the user typed applied on top."""
    import dataclasses

    from wmsim.config import model_preset

    from ..offline import PretrainConfig

    config = dataclasses.replace(PretrainConfig(), model=model_preset(args.preset))
    overrides = {k: getattr(args, k) for k in flat_items(config) if getattr(args, k, None) is not None}
    return apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    from ..offline import make_pretrainer

    config = config_from_args(args)
    trainer = make_pretrainer(config, progress=not args.quiet)
    stats = trainer.collect()
    sources = [stats.get("source"), *(t.get("source") for t in stats.get("tasks", {}).values())]
    origin = ", ".join(f"{s['dataset_id']} ({s['path']})" for s in sources if isinstance(s, dict))
    print(
        f"dataset: {stats['steps']} steps, {stats['episodes']} episodes,"
        f" mean return {stats['episode_return_mean']:.2f}" + (f"; from Minari: {origin}" if origin else "")
    )
    for added in stats.get("additions", []):
        print(
            f"  + {added['steps']} steps of a dream-trained policy added after update {added['after_update']}"
            f" ({added['episodes']} episodes, mean return {added['episode_return_mean']:.2f})"
        )
    metrics = trainer.fit()
    bundle = trainer.write_bundle()
    loss = f"model_loss {metrics['model_loss']:.4g}" if metrics else "already trained"
    print(f"{trainer.updates} updates ({loss}); bundle: {bundle}")
    return 0
