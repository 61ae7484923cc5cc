"""``wmsim models``, ``wmsim pull``, ``wmsim push`` and ``wmsim card``: bundles and the Hugging Face Hub."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    sub.add_parser("models", help="list the pretrained models and the bundles in the local Hub cache")

    p = sub.add_parser("pull", help="download a model (pretrained name or Hub repo id) into the Hub cache")
    p.add_argument("model", help="a pretrained name (e.g. CartPole) or a repo id owner/name[@revision]")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: the pinned one)")

    p = sub.add_parser("push", help="upload a bundle folder to a Hub model repo (created if needed)")
    p.add_argument("bundle", help="the bundle folder (e.g. runs/x/bundle)")
    p.add_argument("repo_id", help="owner/name of the model repo")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--revision", default=None, help="branch to commit to (default main)")
    p.add_argument("--tag", default=None, help="tag the new commit (a revision to pin)")
    p.add_argument("--name", default=None, help="the short name the card's usage snippet uses")
    p.add_argument("--no-card", action="store_true", help="upload the card as it is, without refreshing it")

    p = sub.add_parser("card", help="write or refresh a bundle's README.md model card")
    p.add_argument("bundle", help="the bundle folder")
    p.add_argument("--name", default=None, help="a registered short name, for the usage snippet")
    p.add_argument("--repo-id", default=None, help="the Hub repo it is (or will be) published as")
    p.add_argument(
        "--commands",
        default=None,
        metavar="FILE",
        help="a text file with the command lines that reproduce the bundle (stored in config.json's info)",
    )
    return {"models": cmd_models, "pull": cmd_pull, "push": cmd_push, "card": cmd_card}


def _size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024  # type: ignore[assignment]
    return ""


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cmd_models(args: argparse.Namespace) -> int:
    import hub
    from wmsim.registry import KNOWN_MODELS, PRETRAINED

    print("pretrained models (gym.make('wmsim/<NAME>-dream')):")
    if not PRETRAINED:
        print("  none in this release")
    for name, entry in sorted(PRETRAINED.items()):
        shipped = entry.shipped_dir
        where = f"shipped {_size(_folder_size(shipped))}" if shipped else "Hub only"
        print(
            f"  {name:<12} {entry.repo_id}@{entry.revision:<10} {entry.env_id:<22} {where}  {entry.summary}"
        )
    if KNOWN_MODELS:
        print("registered in this process:")
        for name, path in sorted(KNOWN_MODELS.items()):
            print(f"  {name:<12} {path}")
    cached = hub.cached_models()
    print("in the local Hub cache:")
    if not cached:
        print("  none")
    for model in cached:
        refs = ", ".join(model.refs) or "-"
        print(f"  {model.repo_id:<32} {model.commit[:12]}  refs: {refs:<12} {_size(model.size_bytes)}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    import hub
    from wmsim.registry import PRETRAINED, split_revision

    repo_id, revision = split_revision(args.model)
    entry = PRETRAINED.get(repo_id)
    if entry is not None:
        repo_id, revision = entry.repo_id, revision or entry.revision
    elif "/" not in repo_id:
        names = ", ".join(sorted(PRETRAINED)) or "none in this release"
        raise ValueError(f"{args.model!r} is neither a pretrained name ({names}) nor a repo id owner/name")
    path = hub.download_bundle(repo_id, args.revision or revision)
    print(f"{repo_id}@{args.revision or revision or 'main'} -> {path}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    import hub
    from wmsim.bundle_format import read_bundle_config
    from wmsim.card import write_card

    read_bundle_config(args.bundle)  # a valid bundle, or a clear error before anything is sent
    if not args.no_card:
        write_card(args.bundle, name=args.name, repo_id=args.repo_id)
    result = hub.upload_bundle(
        args.bundle,
        args.repo_id,
        private=args.private,
        commit_message=args.message,
        revision=args.revision,
        tag=args.tag,
    )
    print(f"pushed {len(result.files)} files to {result.repo_id}: {result.commit_url}")
    if result.tag:
        print(f"tagged {result.commit_oid[:12]} as {result.tag}: pin it with {result.repo_id}@{result.tag}")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from wmsim.card import store_commands, write_card

    if args.commands:
        lines = [line.strip() for line in Path(args.commands).read_text().splitlines()]
        store_commands(args.bundle, [line for line in lines if line and not line.startswith("#")])
    path = write_card(args.bundle, name=args.name, repo_id=args.repo_id)
    print(f"wrote {path}")
    return 0
