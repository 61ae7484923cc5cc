"""The ``wmsim`` command. It lives in ``agents``, the top layer, because its subcommands reach every
layer (``hub`` <- ``wmsim`` <- ``agents``).

Training options are generated from :class:`agents.config.TrainConfig`: every field is a
``--dotted.name`` option that overrides the chosen ``--preset``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub import HubError
from wmsim.config import add_config_arguments, apply_overrides, flat_items, int_at_least
from wmsim.fileio import atomic_write_text, describe_os_error, ensure_directory

from .config import TRAIN_PRESETS, TrainConfig, train_preset

#: Modules that add subcommands: each has ``add_parsers(sub) -> dict[str, handler]`` where a handler
#: takes the parsed ``argparse.Namespace`` and returns an exit code. Imported when the parser is built.
COMMAND_MODULES: tuple[str, ...] = (
    "agents.commands.pretrain",
    "agents.commands.hub",
    "agents.commands.quickstart",
    "agents.commands.play",
    "agents.commands.onnx",
    "agents.commands.sweep",
)


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a DreamerV2 world model on a real env (resumes if --logdir holds the run)",
        description="Collect real experience and train a DreamerV2 world model. Options override the"
        " values of --preset; run the same command again to resume after an interruption.",
    )
    p.add_argument("--preset", default="small", help=f"one of {', '.join(TRAIN_PRESETS)} (default small)")
    p.add_argument("--no-eval", action="store_true", help="skip the open-loop evaluation at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--dream",
        default=None,
        metavar="MODEL",
        help="train only the actor-critic inside this bundle's world model (no real env)",
    )
    p.add_argument(
        "--dream-updates", type=int_at_least(1), default=2000, help="actor-critic updates with --dream"
    )
    p.add_argument(
        "--dream-eval-every",
        type=int_at_least(0),
        default=0,
        help="with --dream: every N updates play 5 real episodes and compare the critic's values with the"
        " discounted returns that followed (0: never)",
    )
    p.add_argument(
        "--dream-pool",
        type=int_at_least(1),
        default=None,
        help="parallel dreamed episodes with --dream (default 512; with --learner pwm the preset's num_envs)",
    )
    p.add_argument(
        "--learner",
        default="dreamerv2",
        choices=["dreamerv2", "pwm"],
        help="with --dream: DreamerV2's actor-critic (default) or PWM's first-order learner (gradients"
        " through the model's dynamics over a short horizon; see docs/multitask.md)",
    )
    p.add_argument(
        "--task",
        default=None,
        help="with --dream: the task of a multi-task bundle to learn (e.g. walker-walk)",
    )
    p.add_argument(
        "--pwm-preset",
        default="pwm",
        choices=["pwm", "pwm_cpu", "tiny"],
        help="with --learner pwm: its settings (pwm: the paper's; pwm_cpu: 2 critic passes per update)",
    )
    p.add_argument(
        "--dream-replay",
        default=None,
        metavar="DIR",
        help="with --dream: imagine from the model's posterior states of this replay of real steps"
        " (e.g. LOGDIR/replay of `wmsim pretrain`; batch_size x seq_len per update, as DreamerV2)"
        " instead of from a pool of dreamed episodes",
    )
    p.add_argument("--out", default=None, help="with --dream: where to write the bundle (default: in place)")
    add_config_arguments(p, TrainConfig)


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="open-loop evaluation of a bundle on held-out real episodes")
    p.add_argument("bundle", help="a bundle directory (e.g. runs/x/bundle) or known model name (Pong)")
    p.add_argument("--episodes", type=int_at_least(1), default=10)
    p.add_argument("--context", type=int_at_least(1), default=5)
    p.add_argument("--horizon", type=int_at_least(1), default=50)
    p.add_argument("--seed", type=int, default=10_000, help="seed of the first held-out episode")
    p.add_argument(
        "--max-steps", type=int_at_least(1), default=500, help="longest held-out episode, in agent steps"
    )
    p.add_argument(
        "--behaviour",
        default="random",
        choices=["random", "scripted", "mixed"],
        help="who plays the held-out episodes (scripted players score points random play never does)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="folder for openloop.png/json (default: the bundle directory; for a model name,"
        " runs/evaluate-NAME)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--task", default=None, help="the task of a multi-task bundle to evaluate")


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="play a policy (the bundle's, or an SB3 zip) in the real env")
    p.add_argument("model", help="a bundle directory (or known model name)")
    p.add_argument(
        "--sb3",
        default=None,
        metavar="ZIP",
        help="an SB3 model zip trained in the dream. SB3 unpickles it, so a crafted zip runs code:"
        " load only zips you trust (such as the ones you trained)",
    )
    p.add_argument("--algo", default="PPO", help="the SB3 algorithm of --sb3 (PPO, A2C; SAC is detected)")
    p.add_argument(
        "--obs-mode",
        default="latent",
        choices=["latent", "pixels"],
        help="what the SB3 policy observes (latent: through the model's posterior)",
    )
    p.add_argument("--env", default=None, help="the real env id (default: the bundle's; must match it)")
    p.add_argument(
        "--task",
        default=None,
        help="a task of a multi-task bundle (default: the task its policy learned)",
    )
    p.add_argument("--episodes", type=int_at_least(1), default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    p.add_argument("--sample", action="store_true", help="sample actions instead of the policy's mode")
    p.add_argument("--video", default=None, help="write the first episode's frames here (GIF/MP4)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--random", action="store_true", help="play a uniformly random policy (a baseline)")
    p.add_argument(
        "--record",
        default=None,
        metavar="KEY",
        help="store the returns in the bundle's transfer.json under KEY and refresh its card",
    )
    p.add_argument("--label", default=None, help="with --record: how the card names this policy")
    p.add_argument(
        "--record-in",
        default=None,
        metavar="BUNDLE_DIR",
        help="with --record: store the returns in this bundle's transfer.json and card instead (the"
        " model the evaluated policy learned in, e.g. a multi-task model; its model must be the same)",
    )


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks that print a table and write JSON")
    what = p.add_subparsers(dest="what", required=True)
    t = what.add_parser("train", help="full DreamerV2 updates/s, GFLOP/s and fraction of peak per preset")
    t.add_argument(
        "--presets",
        nargs="+",
        default=None,
        choices=[*TRAIN_PRESETS, "sizes_a", "sizes_b"],
        help="presets, or the sizes of the peer comparison (sizes_a: CartPole, sizes_b: Pong);"
        " default: all presets (with --nproc: small)",
    )
    t.add_argument(
        "--gather", action="store_true", help="also time each row with the one-hot gather of the latents on"
    )
    t.add_argument("--phases", action="store_true", help="add the milliseconds per update of each phase")
    t.add_argument("--device", default="auto")
    t.add_argument(
        "--nproc",
        type=int,
        nargs="+",
        default=None,
        help="data-parallel scaling: one torchrun job per number of ranks (e.g. 1 2)",
    )
    t.add_argument("--num-envs", type=int, nargs="+", default=[1], help="with --nproc: real envs per rank")
    t.add_argument("--period", type=int, default=500, help="with --nproc: timed env steps of the loop")
    t.add_argument(
        "--threads-per-rank", type=int, default=None, help="with --nproc: torch threads (default cores/ranks)"
    )
    t.add_argument(
        "--precision", nargs="+", default=["auto"], choices=["auto", "bf16", "fp32"], help="one row each"
    )
    t.add_argument(
        "--updates", type=int_at_least(1), default=5, help="timed updates per preset (after 2 warm-up)"
    )
    t.add_argument(
        "--batch-size", type=int_at_least(1), default=None, help="override every preset's batch size"
    )
    t.add_argument("--json", default="bench_train.json", help="where to write the results")
    d = what.add_parser("dream", help="dreamed steps/s vs num_envs, next to the real env (JSON + markdown)")
    d.add_argument("--env", default="atari/Pong", help="the real env the dream stands for")
    d.add_argument("--preset", default="atari", help="model preset when no --model is given (random weights)")
    d.add_argument("--model", default=None, help="a bundle directory to time instead of a random model")
    d.add_argument("--num-envs", type=int, nargs="+", default=[1, 16, 256, 4096, 65536])
    d.add_argument("--obs", nargs="+", default=["latent", "pixels"], choices=["latent", "pixels", "dict"])
    d.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"]
    )
    d.add_argument("--apis", nargs="+", default=["numpy", "torch"], choices=["numpy", "torch"])
    d.add_argument("--device", default="auto")
    d.add_argument("--seconds", type=float, default=1.0, help="minimum timed seconds per row")
    d.add_argument("--max-pixel-envs", type=int, default=None, help="largest batch for pixel rows")
    d.add_argument("--real-envs", type=int, default=2, help="real envs in the reference row (0: none)")
    d.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnxruntime", "both"],
        help="dream backend(s) to time; onnxruntime rows run the float32 ONNX graphs through the numpy API"
        " (exported to a temporary folder when the bundle has none)",
    )
    d.add_argument(
        "--ort-threads", type=int, default=None, help="onnxruntime intra-op threads (default: torch's count)"
    )
    d.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    d.add_argument("--json", default="bench_dream.json", help="results; a .md table is written beside it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wmsim", description="Learned simulators from DreamerV2 world models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _evaluate_parser(sub)
    _eval_parser(sub)
    _bench_parser(sub)
    for name in COMMAND_MODULES:
        HANDLERS.update(importlib.import_module(name).add_parsers(sub))
    return parser


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset named by ``--preset`` with every option the user typed applied on top."""
    config = train_preset(args.preset)
    overrides = {
        key: getattr(args, key) for key in flat_items(config) if getattr(args, key, None) is not None
    }
    return apply_overrides(config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    config = config_from_args(args)
    if args.dream:
        return _train_dream(args, config)
    result = train(config, progress=not args.quiet, evaluate=not args.no_eval)
    if result.rank != 0:  # under torchrun, rank 0 reports for the job
        return 0
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    print(f"trained {result.env_steps} env steps, {result.updates} updates{resumed}")
    if result.eval_returns:
        curve = ", ".join(f"{step}: {ret:.1f}" for step, ret in result.eval_returns)
        print(f"policy evaluation return by env step (mode, {config.eval_episodes} episodes): {curve}")
    print(f"bundle: {result.bundle}")
    if result.open_loop is not None:
        print(f"open-loop figure: {result.logdir / 'openloop.png'}")
    return 0


def _train_dream(args: argparse.Namespace, config: TrainConfig) -> int:
    from wmsim.devices import resolve_device
    from wmsim.registry import resolve_model

    from .dreamerv2.dream_train import train_in_world_model

    bundle = resolve_model(args.dream)
    if args.learner == "pwm":
        return _train_pwm(args, config, bundle)
    result = train_in_world_model(
        bundle,
        config.agent,
        updates=args.dream_updates,
        pool=args.dream_pool or 512,
        replay=args.dream_replay,
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        out=args.out,
        device=resolve_device(config.device),
        seed=config.seed,
        progress=not args.quiet,
        eval_every=args.dream_eval_every,
        task=args.task,
    )
    print(f"trained the actor-critic for {result.updates} updates in the dream of {args.dream}")
    _print_curve(result.curve)
    print(f"bundle with policy: {result.bundle}  (play it: wmsim eval {result.bundle})")
    return 0


def _print_curve(curve: list[dict[str, float]]) -> None:
    """The dream loop's evaluation rows as a table (real episodes of the policy's mode)."""
    if not curve:
        return
    names = [n.replace("_", " ") for n in curve[0]]
    print("  ".join(names) + "  (real episodes, policy mode)")
    for row in curve:
        cells = (
            f"{v:>{len(n)}.{0 if n == 'updates' else 1}f}" for n, v in zip(names, row.values(), strict=True)
        )
        print("  ".join(cells))


def _train_pwm(args: argparse.Namespace, config: TrainConfig, bundle: Any) -> int:
    import dataclasses

    from wmsim.devices import resolve_device

    from .pwm import pwm_preset, train_pwm

    settings = pwm_preset(args.pwm_preset)
    if args.dream_pool is not None:
        settings = dataclasses.replace(settings, num_envs=args.dream_pool)
    result = train_pwm(
        bundle,
        settings,
        task=args.task,
        updates=args.dream_updates,
        replay=args.dream_replay,
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        out=args.out,
        device=resolve_device(config.device),
        seed=config.seed,
        progress=not args.quiet,
        eval_every=args.dream_eval_every,
    )
    task = f" (task {args.task})" if args.task else ""
    print(f"trained the PWM actor for {result.updates} updates in the dream of {args.dream}{task}")
    _print_curve(result.curve)
    print(f"bundle with policy: {result.bundle}  (play it: wmsim eval {result.bundle})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_policy_in_real

    if args.record_in and not args.record:
        raise ValueError(
            "--record-in BUNDLE_DIR says where --record KEY stores the returns: pass --record too"
        )

    result = evaluate_policy_in_real(
        args.model,
        sb3=args.sb3,
        algo=args.algo,
        obs_mode=args.obs_mode,
        env_id=args.env,
        episodes=args.episodes,
        seed=args.seed,
        mode=not args.sample,
        video=args.video,
        device=args.device,
        random=args.random,
        task=args.task,
    )
    if args.record:
        _record_transfer(args, result)
    print(
        f"{result['policy']} in {result['env']}: return {result['mean']:.2f} +- {result['std']:.2f}"
        f" over {len(result['returns'])} episodes (seeds {args.seed}..{args.seed + args.episodes - 1})"
    )
    if args.video:
        print(f"video: {args.video}")
    return 0


def _record_transfer(args: argparse.Namespace, result: dict) -> None:
    """``--record KEY``: the returns into ``transfer.json`` of the evaluated bundle, or of ``--record-in``
    (which must hold the same model). A task of a multi-task model is recorded as ``TASK/KEY``."""
    from wmsim.card import record_transfer, write_card
    from wmsim.registry import resolve_model

    bundle = resolve_model(args.model)
    target = resolve_model(args.record_in) if args.record_in else bundle
    if target.path is None:
        raise ValueError("--record writes into the bundle folder: pass a bundle directory")
    if args.record_in and not _same_weights(target.model, bundle.model):
        raise ValueError(
            f"--record-in {args.record_in}: its world model is not the one of {args.model} (other"
            " settings or weights); record into the bundle whose dream the policy learned in"
        )
    command = "wmsim " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["eval"] else ""
    task = result.get("task")
    key = f"{task}/{args.record}" if task else args.record
    label = args.label or result["policy"]
    record_transfer(target.path, key, label, result["returns"], command, args.seed, task=task)
    write_card(target.path)
    print(f"recorded {key!r} in {target.path / 'transfer.json'} and the card")


def _same_weights(a: Any, b: Any) -> bool:
    """Whether two world models hold the same settings and the same weights."""
    first, second = a.state_dict(), b.state_dict()
    return (
        a.config == b.config
        and first.keys() == second.keys()
        and all(first[k].shape == second[k].shape and bool((first[k] == second[k]).all()) for k in first)
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from wmsim.bundle import load_bundle
    from wmsim.devices import resolve_device
    from wmsim.evaluate import format_table
    from wmsim.registry import resolve_model_dir

    from .behaviours import check_behaviour
    from .train import evaluate_model

    bundle = load_bundle(resolve_model_dir(args.bundle), device=resolve_device(args.device))
    if bundle.tasks or args.task is not None:
        from wmsim.dream.simulator import bundle_for_task

        bundle = bundle_for_task(bundle, args.task)
    check_behaviour(args.behaviour, bundle.env_spec.id)
    # a model name's bundle lies in the package or the Hub cache: never write there by default
    given = Path(args.bundle)
    default_out = given if given.is_dir() else Path("runs") / f"evaluate-{given.name}"
    out = ensure_directory(Path(args.out) if args.out else default_out, "--out")
    result = evaluate_model(
        bundle.model,
        bundle.env_spec,
        episodes=args.episodes,
        seed=args.seed,
        context=args.context,
        horizon=args.horizon,
        max_steps=args.max_steps,
        figure=out / (f"openloop-{bundle.task}.png" if bundle.task else "openloop.png"),
        behaviour=args.behaviour,
    )
    record = out / "openloop.json"
    if bundle.task:  # a task of a multi-task model: one entry per task in the same file
        previous = json.loads(record.read_text()) if record.is_file() else {}
        tasks = previous.get("tasks", {}) if isinstance(previous, dict) else {}
        tasks[bundle.task] = json.loads(result.to_json())
        atomic_write_text(record, json.dumps({"tasks": tasks}, indent=1))
    else:
        atomic_write_text(record, result.to_json())
    print(format_table(result))
    figure = out / (f"openloop-{bundle.task}.png" if bundle.task else "openloop.png")
    print(f"wrote {figure} and {record}" + (f" (task {bundle.task})" if bundle.task else ""))
    return 0


def _results_folder(json_path: str) -> None:
    """Create the folder of a benchmark's results before the benchmark runs (so minutes of timing are
    never lost to a missing folder); a path that cannot hold them is named before any work."""
    folder = Path(json_path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(
            f"wmsim bench: --json {json_path}: cannot create the folder {folder}: {error}"
        ) from None


def cmd_bench(args: argparse.Namespace) -> int:
    _results_folder(args.json)
    if args.what == "dream":
        return _bench_dream(args)
    if args.nproc:
        return _bench_train_ranks(args)
    from wmsim.devices import resolve_device

    from .bench import bench_train, format_bench

    presets = args.presets or list(TRAIN_PRESETS)
    device = resolve_device(args.device)
    result = bench_train(
        presets, device, args.precision, args.updates, args.batch_size, args.gather, args.phases
    )
    table = format_bench(result)
    print(table)
    json_path = Path(args.json)
    json_path.write_text(json.dumps(result, indent=2))
    json_path.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {json_path} and {json_path.with_suffix('.md')}")
    return 0


def _bench_train_ranks(args: argparse.Namespace) -> int:
    from wmsim.devices import resolve_device

    from .bench import bench_train_ranks, format_ranks_markdown

    device = resolve_device(args.device).type
    presets = args.presets or ["small"]
    rows = bench_train_ranks(args.nproc, presets, args.num_envs, device, args.period, args.threads_per_rank)
    table = format_ranks_markdown(rows)
    print(table)
    json_path = Path(args.json)
    json_path.write_text(json.dumps(rows, indent=2))
    json_path.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {json_path} and {json_path.with_suffix('.md')}")
    return 0


def _bench_dream(args: argparse.Namespace) -> int:
    from wmsim.dream.bench import format_markdown, run_bench_dream, write_results
    from wmsim.registry import resolve_model

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    model = resolve_model(args.model) if args.model else None
    result = run_bench_dream(
        env_id=model.env_spec.id if model is not None else args.env,
        preset=args.preset,
        model=model,
        num_envs=tuple(args.num_envs),
        obs_modes=tuple(args.obs),
        device=args.device,
        dtypes=tuple(args.dtypes),
        apis=tuple(args.apis),
        min_seconds=args.seconds,
        max_pixel_envs=args.max_pixel_envs,
        real_envs=args.real_envs,
        backends=("torch", "onnxruntime") if args.backend == "both" else (args.backend,),
        ort_threads=args.ort_threads,
    )
    print(format_markdown(result))
    json_path, md_path = write_results(result, args.json)
    print(f"wrote {json_path} and {md_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "eval": cmd_eval, "bench": cmd_bench}
    commands.update(HANDLERS)
    try:
        return commands[args.command](args)
    except (ValueError, OSError, HubError) as exc:
        if args.verbose:
            raise
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"wmsim {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
