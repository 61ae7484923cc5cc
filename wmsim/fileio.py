"""Crash-safe file writes: the one implementation every writer of run files, checkpoints, replay chunks
and bundles goes through (no torch here; the onnxruntime backend and the card tools import it).

- :func:`atomic_write` writes a file through a temporary sibling, fsyncs it and renames it into place,
  so a reader (or a process killed at any moment, even by SIGKILL) sees the old file or the new one,
  never a part of one.
- :func:`atomic_directory` builds a directory in a temporary sibling and swaps it in: the old
  directory stays complete until the new one is; :func:`recover_directory` finishes a swap that a kill
  interrupted between its two renames.
- :func:`remove_temporaries` deletes what killed writers left behind (call it where one process owns
  the folder, e.g. when a run resumes).

A temporary is named ``.<name>.<random>.tmp`` beside its target (``.<name>.<random>.old`` for a
directory being swapped out), so nothing that lists the folder mistakes it for the real file. File
system errors (a read-only folder, a full disk) raise :class:`WriteError`, an :class:`OSError` whose
message names the target path.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"
#: Names of temporaries: ``.<name>.<hex>.tmp`` / ``.old`` (this module) and ``.tmp-*`` (older writers).
TEMPORARY = re.compile(r"^\.(tmp-.*|.+\.tmp|.+\.[0-9a-f]{12}\.old)$")
#: A directory renamed aside by :func:`atomic_directory`: ``.<name>.<hex>.old``.
SWAPPED_ASIDE = re.compile(r"^\.(.+)\.[0-9a-f]{12}\.old$")


class WriteError(OSError):
    """A file or directory could not be written (read-only folder, full disk, a file in the way); the
    message names the path."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno  # type: ignore[misc]


def describe_os_error(exc: OSError) -> str:
    """One line for a file system error: the path and the reason (``str`` of an OSError shows
    ``[Errno N]`` first and may hide which path)."""
    if isinstance(exc, WriteError) or not exc.strerror:
        return str(exc)
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"{paths}: {exc.strerror}" if paths else exc.strerror


def _temporary(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}{suffix}")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary left by a (possibly killed) atomic write."""
    return TEMPORARY.match(name) is not None


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_error(target: Path, exc: OSError) -> WriteError:
    reason = exc.strerror or str(exc)
    return WriteError(
        f"cannot write {target}: {reason} (check that the folder is writable and the disk has room)",
        exc.errno,
    )


def ensure_directory(path: str | os.PathLike[str], what: str = "folder") -> Path:
    """Create ``path`` (and its parents) if needed; a clear :class:`WriteError` when a file is in the way
    or the location is not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(f"{what} {path} is a file, not a folder: pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    return path


def atomic_write(target: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Write ``target`` atomically: ``write(tmp)`` creates a temporary sibling, which is fsynced and
    renamed over ``target``. The folder is created if needed. Returns ``target``.

    On any error the temporary is removed and ``target`` is left as it was; an :class:`OSError` becomes
    a :class:`WriteError` naming ``target``.
    """
    target = Path(target)
    ensure_directory(target.parent)
    tmp = _temporary(target, TMP_SUFFIX)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except WriteError:
        raise
    except OSError as exc:
        raise _write_error(target, exc) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_directory(target.parent)
    return target


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(target: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    """:func:`atomic_write` of ``data`` as JSON (keys sorted, so a rewrite of equal data is identical)."""
    return atomic_write_text(target, json.dumps(data, indent=indent, sort_keys=True))


def atomic_directory(
    target: str | os.PathLike[str],
    write: Callable[[Path], Any],
    *,
    carry_over: Callable[[str], bool] | None = None,
) -> Path:
    """Build the directory ``target`` anew and swap it in, so that ``target`` is always either the old
    complete directory or the new complete one. One process writes a given ``target`` at a time.

    A temporary sibling folder first receives hard links (or copies) of the old ``target``'s entries
    for which ``carry_over(name)`` is true, then ``write(staging)`` fills it (it must create or replace
    files, never modify a carried-over one in place: that would change the old directory too). Every
    file is fsynced, the old directory is renamed aside, the new one renamed into place and the old one
    deleted. A kill between the two renames leaves no ``target`` but both complete siblings:
    :func:`recover_directory` (called here first, and by whoever resumes) puts the new one in place.
    Temporaries of earlier, killed writes of ``target`` are deleted.
    """
    target = Path(os.path.abspath(target))
    if target.is_symlink():
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise WriteError(f"{target} is a file, not a folder: pass a folder path")
    ensure_directory(target.parent)
    recover_directory(target)
    remove_temporaries(target.parent, names=[target.name])
    staging = _temporary(target, TMP_SUFFIX)
    try:
        staging.mkdir()
        if carry_over is not None and target.is_dir():
            for entry in target.iterdir():
                if carry_over(entry.name) and not is_temporary(entry.name):
                    _link_or_copy(entry, staging / entry.name)
        write(staging)
        for file in _files(staging):
            _fsync_file(file)
        fsync_directory(staging)
        if target.exists():
            aside = staging.with_name(staging.name[: -len(TMP_SUFFIX)] + OLD_SUFFIX)
            os.replace(target, aside)
            os.replace(staging, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(staging, target)
    except WriteError:
        raise
    except OSError as exc:
        raise _write_error(target, exc) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    fsync_directory(target.parent)
    return target


def recover_directory(target: str | os.PathLike[str]) -> bool:
    """Finish a swap of :func:`atomic_directory` that a kill interrupted between its two renames: when
    ``target`` is missing and a complete new directory waits beside its old one, move it into place.
    Returns True when it did."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return False
    for aside in sorted(target.parent.glob(f".{glob_escape(target.name)}.*{OLD_SUFFIX}")):
        staged = aside.with_name(aside.name[: -len(OLD_SUFFIX)] + TMP_SUFFIX)
        if staged.is_dir():  # the old one was renamed aside only after the new one was complete
            os.replace(staged, target)
            shutil.rmtree(aside, ignore_errors=True)
            fsync_directory(target.parent)
            return True
    return False


def interrupted_swap(target: str | os.PathLike[str]) -> Path | None:
    """The complete new directory a killed :func:`atomic_directory` left beside a missing ``target``."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return None
    for aside in sorted(target.parent.glob(f".{glob_escape(target.name)}.*{OLD_SUFFIX}")):
        staged = aside.with_name(aside.name[: -len(OLD_SUFFIX)] + TMP_SUFFIX)
        if staged.is_dir():
            return staged
    return None


def remove_temporaries(folder: str | os.PathLike[str], names: Iterable[str] | None = None) -> list[Path]:
    """Clean up after killed atomic writes in ``folder`` (not recursive): finish the folder swaps a kill
    interrupted (:func:`recover_directory`), then delete the temporaries; ``names`` limits it to those
    targets. Call it only where no other process is writing. Returns what was deleted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = None if names is None else tuple(f".{name}." for name in names)
    for aside in list(folder.glob(f"*{OLD_SUFFIX}")):
        match = SWAPPED_ASIDE.match(aside.name)
        if match and (wanted is None or aside.name.startswith(wanted)):
            recover_directory(folder / match.group(1))
    removed = []
    for entry in folder.iterdir():
        if not is_temporary(entry.name) or (wanted is not None and not entry.name.startswith(wanted)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def _link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link ``source`` (a file, or a folder's files) at ``destination``; copy where links fail."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, destination, symlinks=True, copy_function=_link_file)
    else:
        _link_file(source, destination)


def _link_file(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)
