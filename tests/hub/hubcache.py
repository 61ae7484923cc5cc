"""Build a Hugging Face Hub cache in the Hub's own layout, as ``huggingface_hub`` writes it:
``models--owner--name/refs/<ref>`` holding a commit hash, ``snapshots/<hash>/<files>``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def add_snapshot(cache: Path, repo_id: str, source: Path, refs: tuple[str, ...] = ("main",)) -> str:
    """Copy the files of ``source`` into a new cached commit of ``repo_id``; point ``refs`` at it."""
    digest = hashlib.sha1()
    for file in sorted(source.rglob("*")):
        if file.is_file():
            digest.update(str(file.relative_to(source)).encode() + file.read_bytes())
    commit = digest.hexdigest()
    folder = repo_folder(cache, repo_id)
    shutil.copytree(source, folder / "snapshots" / commit, dirs_exist_ok=True)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (folder / "refs" / ref).write_text(commit)
    return commit
