"""What the local Hugging Face Hub cache holds that looks like a wmsim bundle."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

BUNDLE_FORMAT = "wmsim-bundle"


@dataclass(frozen=True)
class CachedModel:
    """One cached revision of a model repo holding a bundle."""

    repo_id: str
    commit: str
    refs: tuple[str, ...]
    size_bytes: int
    path: Path


def _is_bundle(snapshot: Path) -> bool:
    config = snapshot / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == BUNDLE_FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def cached_models(cache_dir: str | os.PathLike | None = None) -> list[CachedModel]:
    """Every cached model revision whose snapshot holds a wmsim ``config.json`` (an empty list when the
    cache does not exist yet)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(os.fspath(cache_dir) if cache_dir is not None else None)
    except CacheNotFound:
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            snapshot = Path(revision.snapshot_path)
            if _is_bundle(snapshot):
                found.append(
                    CachedModel(
                        repo.repo_id,
                        revision.commit_hash,
                        tuple(sorted(revision.refs)),
                        int(revision.size_on_disk),
                        snapshot,
                    )
                )
    return sorted(found, key=lambda m: (m.repo_id, m.commit))
