"""Download a bundle repo from the Hugging Face Hub into its cache, safely.

Everything goes through ``huggingface_hub`` (its cache layout, progress bars, resumable downloads,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, tokens from ``HF_TOKEN`` or ``hf auth login``). Only files a bundle
may hold are downloaded (JSON, safetensors, ONNX graphs, the card and its images); a repo that holds
pickle-based files (``.pkl``, ``.bin``, ``.pt``, ...) is refused before anything is fetched, and a
cached snapshot that holds one is refused before anything is read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Files a bundle repo may hold; nothing else is downloaded.
ALLOWED_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.onnx",
    "*.md",
    "*.png",
    "*.gif",
    "*.mp4",
    "*.txt",
    ".gitattributes",
]
#: Files that can run code when loaded (pickle and formats built on it): their presence refuses a repo.
UNSAFE_SUFFIXES = (
    ".pkl",
    ".pickle",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".joblib",
    ".dill",
    ".npy",
    ".npz",
    ".zip",
    ".h5",
    ".keras",
)


class HubError(RuntimeError):
    """A model cannot be had from the Hub; the message says why and what to do."""


class NotCachedError(HubError):
    """The Hub cannot be asked (offline) and the model is not in the local cache."""


class UnsafeRepoError(HubError):
    """A repo or cached snapshot holds files that could run code when loaded."""


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, so it can be set after import)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.strip().lower() in {"1", "on", "yes", "true"}:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def unsafe_files(names: list[str]) -> list[str]:
    """The names among ``names`` (repo-relative paths) that could run code when loaded."""
    return sorted(name for name in names if name.lower().endswith(UNSAFE_SUFFIXES))


def download_bundle(
    repo_id: str,
    revision: str | None = None,
    *,
    local_files_only: bool = False,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
) -> Path:
    """The local snapshot folder of ``repo_id`` at ``revision`` (branch, tag or commit; default main),
    downloaded into the Hub cache if needed.

    ``local_files_only=True`` (or ``HF_HUB_OFFLINE=1``) only looks in the cache; ``force_download=True``
    downloads the files again even if they are cached. Raises
    :class:`NotCachedError`, :class:`UnsafeRepoError` or :class:`HubError` with what to do.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub import errors as hf_errors

    offline = local_files_only or is_offline()
    where = f"{repo_id}@{revision or 'main'}"
    try:
        if not offline:
            info = HfApi(token=token).model_info(repo_id, revision=revision)
            refused = unsafe_files([sibling.rfilename for sibling in info.siblings or []])
            if refused:
                raise UnsafeRepoError(_unsafe_message(where, refused))
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
            local_files_only=offline,
            force_download=force_download and not offline,
            allow_patterns=ALLOWED_PATTERNS,
            token=token,
            library_name="wmsim",
        )
    except hf_errors.GatedRepoError as exc:
        raise HubError(
            f"{repo_id} is gated: accept its conditions on the Hub, then log in (`hf auth login`) or set"
            " HF_TOKEN"
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise HubError(
            f"no model repo {repo_id!r} on {_endpoint()}: check the id (`wmsim models` lists the"
            " pretrained ones); if it is private, log in (`hf auth login`) or set HF_TOKEN"
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise HubError(
            f"{repo_id} has no revision {revision!r}: pass a branch, tag or commit that exists, or none"
            " for main"
        ) from exc
    except hf_errors.LocalEntryNotFoundError as exc:
        if offline:
            pull = f"{repo_id}@{revision}" if revision else repo_id
            raise NotCachedError(
                f"{where} is not in the Hub cache ({_cache(cache_dir)}) and the Hub is not asked"
                f" ({'local_files_only' if local_files_only else 'HF_HUB_OFFLINE is set'}): unset"
                f" HF_HUB_OFFLINE where there is network (`wmsim pull {pull}` caches it), or pass a local"
                " bundle directory"
            ) from exc
        raise HubError(
            f"cannot reach the Hub at {_endpoint()} for {where} and it is not cached: check the network"
            " (or HF_ENDPOINT), or pass a local bundle directory"
        ) from exc
    except hf_errors.HfHubHTTPError as exc:
        raise HubError(f"the Hub at {_endpoint()} refused {where}: {exc}") from exc
    except hf_errors.HTTPError as exc:  # no route, DNS failure, timeout: the client's transport errors
        raise HubError(
            f"cannot reach the Hub at {_endpoint()} for {where} ({exc}): check the network (or"
            " HF_ENDPOINT), set HF_HUB_OFFLINE=1 to use only the cache, or pass a local bundle directory"
        ) from exc
    except OSError as exc:  # full disk, unwritable cache
        raise HubError(f"downloading {where} failed: {exc}") from exc
    path = Path(folder)
    present = [str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() or p.is_symlink()]
    refused = unsafe_files(present)
    if refused:
        raise UnsafeRepoError(_unsafe_message(f"the cached snapshot {path}", refused))
    log.debug("%s -> %s", where, path)
    return path


def _unsafe_message(where: str, refused: list[str]) -> str:
    shown = ", ".join(refused[:5]) + (" ..." if len(refused) > 5 else "")
    return (
        f"{where} holds file(s) that could run code when loaded ({shown}); wmsim only loads safetensors"
        " and JSON and refuses such repos: ask the author for a safetensors-only bundle (`wmsim push`"
        " writes one)"
    )


def _endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT)


def _cache(cache_dir: str | os.PathLike | None) -> str:
    from huggingface_hub import constants

    return (
        os.fspath(cache_dir)
        if cache_dir is not None
        else os.environ.get("HF_HUB_CACHE", constants.HF_HUB_CACHE)
    )
