"""Upload a bundle folder to a Hugging Face Hub model repo through ``huggingface_hub``'s own API.

The files sent are checked first: only what a bundle may hold (see :data:`hub.download.ALLOWED_PATTERNS`)
and never a pickle-based file, so a stray checkpoint or secret in the folder is not published.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from .download import ALLOWED_PATTERNS, HubError, unsafe_files

REQUIRED_FILE = "config.json"


@dataclass(frozen=True)
class UploadResult:
    repo_id: str
    commit_url: str
    commit_oid: str
    files: tuple[str, ...]
    tag: str | None


def bundle_files(folder: str | os.PathLike) -> list[str]:
    """The repo-relative paths of a bundle folder that would be uploaded, sorted.

    Raises :class:`HubError` when the folder is not a bundle, holds pickle-based files, or holds files a
    bundle does not (named, so the user can move them out)."""
    root = Path(folder)
    if not (root / REQUIRED_FILE).is_file():
        raise HubError(f"{root} holds no {REQUIRED_FILE}: pass a bundle folder (e.g. runs/x/bundle)")
    names = sorted(
        str(p.relative_to(root)).replace(os.sep, "/")
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    refused = unsafe_files(names)
    if refused:
        raise HubError(
            f"{root} holds pickle-based file(s) {refused[:5]}: bundles are safetensors + JSON only;"
            " move them out of the folder before pushing"
        )
    others = [n for n in names if not any(fnmatch.fnmatch(n.rsplit("/", 1)[-1], p) for p in ALLOWED_PATTERNS)]
    if others:
        raise HubError(
            f"{root} holds file(s) a bundle does not: {others[:5]}; move them out of the folder (allowed:"
            f" {', '.join(ALLOWED_PATTERNS)})"
        )
    return names


def upload_bundle(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str | None = None,
    revision: str | None = None,
    tag: str | None = None,
    token: str | bool | None = None,
    create_pr: bool = False,
) -> UploadResult:
    """Create ``repo_id`` if needed (``private`` applies to a new repo) and commit the bundle's files in
    one commit on ``revision`` (default main), or open a pull request with them (``create_pr``);
    ``tag`` then names that commit (a pinned revision)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub import errors as hf_errors

    root = Path(folder)
    names = bundle_files(root)
    if create_pr and tag:
        raise HubError(f"tag={tag!r} with create_pr: tag the commit once the pull request is merged")
    api = HfApi(token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(root / name)) for name in names]
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload wmsim bundle ({len(names)} files)",
            revision=revision,
            repo_type="model",
            create_pr=create_pr,
        )
        if tag:
            api.create_tag(repo_id, tag=tag, revision=commit.oid, repo_type="model")
    except hf_errors.HfHubHTTPError as exc:
        raise HubError(
            f"pushing {root} to {repo_id} failed: {exc}; check that you are logged in with write access"
            " (`hf auth login` or HF_TOKEN) and that the repo id is yours"
        ) from exc
    except (hf_errors.HTTPError, OSError) as exc:
        raise HubError(f"pushing {root} to {repo_id} failed: {exc}: check the network") from exc
    url = str(commit.pr_url) if create_pr and commit.pr_url else str(commit.commit_url)
    return UploadResult(repo_id, url, str(commit.oid), tuple(names), tag)
