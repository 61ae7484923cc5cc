"""DreamerV2 sequence replay: a bounded in-memory ring of steps, mirrored on disk as compressed chunks.

The training loop appends one *step* at a time (Dreamer's convention, see :mod:`wmsim.data`)::

    obs          uint8 (H, W, C) image or float32 (D,) vector
    action       float32 (A,)   the action that led to ``obs`` (zeros on an episode's first step)
    reward       float32 ()     the reward received on arriving at ``obs``
    is_first, is_last, is_terminal   bool ()

and samples batches ``(B, T, ...)`` of fixed-length sequences for world-model training, as the official
DreamerV2 replay does: each row picks an episode, then a window inside it, and marks the window's first
step ``is_first`` (the world model starts it from the zero state and a zero previous action). An episode
shorter than the row is followed by another window of another episode, again starting with
``is_first``, until the row is full. Episodes are picked with probability proportional to the steps
they hold (so every step is equally likely to be sampled, whatever the episode lengths), and with
``prioritize_ends`` the window at an episode's end gets extra mass (DreamerV2's ``prioritize_ends``,
set by its Atari configuration), so terminations and the last rewards are not undersampled. Steps
without an ``is_first`` key are one long episode: windows are then plain pieces of the stream.

Memory
    One preallocated ring array of ``capacity`` steps per key, allocated at the first step (or at
    reload). Step ``g`` of the stream (its global index, counted from the start of the run) lives in
    slot ``g % capacity``; the ring holds the steps ``[total_steps - len(replay), total_steps)``. A
    sampled batch is a single fancy index into each array.

Disk
    Every ``chunk_length`` steps the pending steps are written as one ``np.savez_compressed`` file
    ``{first:012d}-{n:06d}.npz`` (``first`` = global index of its first step, ``n`` = its steps);
    :meth:`Replay.flush` writes a partial chunk at once (before a checkpoint). A chunk is written to a
    temporary file in the same directory, fsynced and renamed (:func:`wmsim.fileio.atomic_write`), so a
    crash at any moment (even SIGKILL) loses at most the steps not yet written and never leaves a
    partial chunk under a chunk name. Chunk files whose every step is older than
    ``total_steps - capacity`` are deleted.

Reload (the constructor)
    * stale temporary files of a crashed writer are deleted;
    * the chunks, sorted by first index, must form a contiguous stream. At a gap (a missing chunk) the
      older chunks cannot be joined to the stream: they are deleted with a warning and the contiguous
      tail after the last gap is kept. A chunk contained in another one (left by a :meth:`truncate`
      interrupted between writing the shortened chunk and deleting the old one) is deleted; chunks that
      partly overlap raise :class:`ReplayError`;
    * the newest ``capacity`` steps are loaded; ``total_steps`` is the end index of the last chunk.

Corrupt chunks (policy)
    Atomic writes mean a crash cannot leave a truncated chunk, so an unreadable chunk (bad zip, wrong keys,
    shapes or dtypes, a length that does not match its name) points to outside damage. The *newest* chunk
    is the one a filesystem without working fsync could lose, so when it is unreadable it is renamed to
    ``<name>.corrupt`` (kept for inspection, no longer loaded) with a warning and the replay resumes from
    the chunk before it. Any *other* unreadable chunk raises :class:`ReplayError` naming the file: delete
    it (the chunks before it are then dropped as a gap) or point ``--logdir`` elsewhere.

One process writes a directory at a time: constructing a replay deletes temporary files in it.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wmsim.fileio import atomic_write, is_temporary

log = logging.getLogger(__name__)

CHUNK_PATTERN = re.compile(r"^(\d{12,})-(\d{6})\.npz$")
CORRUPT_SUFFIX = ".corrupt"
MAX_CHUNK_LENGTH = 999_999  # six digits in the file name
STATE_VERSION = 1

StepValue = np.ndarray | np.generic | float | int | bool


class ReplayError(ValueError):
    """A replay directory that cannot be loaded (an unreadable chunk, overlapping chunks)."""


class _ChunkUnreadable(Exception):
    """Internal: one chunk file could not be read or does not fit the replay's layout."""


@dataclass(frozen=True)
class _Chunk:
    """One chunk file: global steps ``[first, first + length)``."""

    first: int
    length: int
    path: Path

    @property
    def end(self) -> int:
        return self.first + self.length


def chunk_name(first: int, length: int) -> str:
    """The file name of the chunk holding steps ``[first, first + length)``."""
    return f"{first:012d}-{length:06d}.npz"


class Replay:
    """Sequence replay of at most ``capacity`` steps, stored in ``directory`` as compressed chunks.

    Args:
        directory: where the chunk files live; created if missing, loaded if it holds chunks.
        capacity: the most steps held (in memory and, up to one partial chunk, on disk).
        chunk_length: steps per chunk file. Chunks are written every ``min(chunk_length, capacity)``
            steps, so pending steps are never overwritten in the ring.
        seed: seed of the sampling RNG (see :meth:`state_dict` to resume it exactly).
    """

    def __init__(
        self, directory: str | os.PathLike[str], capacity: int, *, chunk_length: int = 1024, seed: int = 0
    ) -> None:
        if int(capacity) < 1:
            raise ValueError(f"replay capacity must be at least 1, got {capacity}")
        if not 1 <= int(chunk_length) <= MAX_CHUNK_LENGTH:
            raise ValueError(f"replay chunk_length must be in [1, {MAX_CHUNK_LENGTH}], got {chunk_length}")
        self.directory = Path(directory)
        self.capacity = int(capacity)
        self.chunk_length = int(chunk_length)
        self._write_every = min(self.chunk_length, self.capacity)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._arrays: dict[str, np.ndarray] = {}  # ring arrays (capacity, *shape), slot = index % capacity
        self._total = 0  # steps ever added: the next step's global index
        self._flushed = 0  # steps [0, _flushed) of the stream are on disk (or were, before eviction)
        self._size = 0  # steps held: [_total - _size, _total)
        self._chunks: deque[_Chunk] = deque()  # this stream's chunk files, oldest first
        self._episode_starts: deque[int] = deque()  # global indices of held steps with is_first set
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None  # cached (starts, ends) of episodes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load()

    # ------------------------------------------------------------------ counters
    def __len__(self) -> int:
        """Steps held in memory (at most ``capacity``)."""
        return self._size

    @property
    def total_steps(self) -> int:
        """Steps ever added to the stream, evicted ones included; the next step's global index."""
        return self._total

    @property
    def flushed_steps(self) -> int:
        """Steps of the stream written to disk: ``total_steps`` minus the pending steps."""
        return self._flushed

    @property
    def keys(self) -> tuple[str, ...]:
        """The step keys, in the order of the first step (empty before the first step)."""
        return tuple(self._arrays)

    def __repr__(self) -> str:
        return (
            f"Replay({str(self.directory)!r}, capacity={self.capacity}, chunk_length={self.chunk_length},"
            f" held={self._size}, total_steps={self._total}, flushed_steps={self._flushed})"
        )

    # ------------------------------------------------------------------ adding
    def add(self, step: Mapping[str, StepValue]) -> None:
        """Append one step (a dict of arrays/scalars; the first step fixes keys, shapes and dtypes).

        Python scalars are cast to the stored dtype (a Python float becomes float32 in the first step);
        numpy arrays and scalars must match the stored dtype and shape exactly. Raises ValueError naming
        the key on a mismatch, leaving the replay unchanged. Writes a chunk when enough steps are pending.
        """
        if not self._arrays:
            self._allocate({key: self._first_value(key, value) for key, value in step.items()})
        values = self._check_step(step)
        slot = self._total % self.capacity
        for key, value in values.items():
            self._arrays[key][slot] = value
        if "is_first" in values and bool(values["is_first"]):
            self._episode_starts.append(self._total)
        self._total += 1
        self._size = min(self._size + 1, self.capacity)
        self._bounds = None  # the newest episode grew, the oldest may have lost a step
        if self._total - self._flushed >= self._write_every:
            self._write_chunk()

    def flush(self) -> None:
        """Write the pending steps now, as one (possibly partial) chunk; nothing when none are pending."""
        self._write_chunk()

    @staticmethod
    def _first_value(key: str, value: StepValue) -> np.ndarray:
        if isinstance(value, bool):
            array = np.asarray(value, np.bool_)
        elif isinstance(value, float):
            array = np.asarray(value, np.float32)
        else:
            array = np.asarray(value)
        if array.dtype == object or array.dtype.kind in "OUSV":
            raise ValueError(f"step key {key!r}: dtype {array.dtype} cannot be stored (use numeric or bool)")
        return array

    def _check_step(self, step: Mapping[str, StepValue]) -> dict[str, np.ndarray]:
        if step.keys() != self._arrays.keys():
            missing = [k for k in self._arrays if k not in step]
            extra = [k for k in step if k not in self._arrays]
            detail = "; ".join(
                part
                for part in (
                    f"missing key(s) {missing}" if missing else "",
                    f"unexpected key(s) {extra}" if extra else "",
                )
                if part
            )
            raise ValueError(f"step keys differ from the replay's: {detail} (expected {list(self._arrays)})")
        values: dict[str, np.ndarray] = {}
        for key, ring in self._arrays.items():
            value = step[key]
            shape, dtype = ring.shape[1:], ring.dtype
            if isinstance(value, np.ndarray | np.generic):
                array = np.asarray(value)
                ok = array.dtype == dtype and array.shape == shape
            else:  # a Python scalar or sequence: cast when it is of the same kind
                array = np.asarray(value)
                ok = array.shape == shape and np.can_cast(array.dtype, dtype, "same_kind")
            if not ok:
                raise ValueError(
                    f"step key {key!r}: expected {dtype} of shape {shape}, "
                    f"got {array.dtype} of shape {array.shape}"
                )
            values[key] = array
        return values

    def _allocate(self, examples: Mapping[str, np.ndarray]) -> None:
        """Ring arrays ``(capacity, *shape)`` per key (``np.empty``: pages are committed as written)."""
        if not examples:
            raise ValueError("a replay step needs at least one key")
        self._arrays = {
            key: np.empty((self.capacity, *value.shape), value.dtype) for key, value in examples.items()
        }

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, length: int, *, prioritize_ends: bool = False) -> dict[str, np.ndarray]:
        """``batch_size`` rows of ``length`` steps, each made of windows inside episodes (see the module
        docstring); the first step of every window has ``is_first`` set.

        Returns a dict of arrays ``(B, T, *shape)`` (``(B, T)`` for scalar keys) with the stored dtypes.
        """
        if batch_size < 1 or length < 1:
            raise ValueError(f"batch_size and length must be positive, got {batch_size} and {length}")
        if self._size < length:
            raise ValueError(
                f"replay holds {self._size} steps, need at least {length}: "
                "collect more before training (prefill)"
            )
        index = np.empty((batch_size, length), np.int64)
        first = np.zeros((batch_size, length), np.bool_)
        for row in range(batch_size):
            filled = 0
            while filled < length:
                start, size = self._window(length - filled, prioritize_ends)
                index[row, filled : filled + size] = np.arange(start, start + size)
                first[row, filled] = True
                filled += size
        batch = {key: ring[index % self.capacity] for key, ring in self._arrays.items()}
        if "is_first" in batch:
            batch["is_first"] |= first
        return batch

    def _window(self, most: int, prioritize_ends: bool) -> tuple[int, int]:
        """One window ``(first global step, length)`` of at most ``most`` steps inside one episode:
        the episode with probability proportional to its held steps, the window uniform over its
        places in the episode, plus ``most`` extra chances for the last place with ``prioritize_ends``."""
        starts, ends = self._episode_bounds()
        oldest = self._total - self._size
        episode = int(np.searchsorted(starts, oldest + self._rng.integers(self._size), side="right")) - 1
        begin, end = int(starts[episode]), int(ends[episode])
        size = min(end - begin, most)
        places = end - begin - size + 1
        offset = min(int(self._rng.integers(places + (size if prioritize_ends else 0))), places - 1)
        return begin + offset, size

    def _episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """First and end global steps ``(E,), (E,)`` of the held episodes, oldest first (the oldest
        may have lost its start to eviction, the newest may still be running)."""
        if self._bounds is None:
            oldest = self._total - self._size
            while self._episode_starts and self._episode_starts[0] < oldest:
                self._episode_starts.popleft()
            starts = list(self._episode_starts)
            if not starts or starts[0] != oldest:
                starts.insert(0, oldest)
            begin = np.asarray(starts, np.int64)
            self._bounds = (begin, np.append(begin[1:], self._total))
        return self._bounds

    def contents(self) -> dict[str, np.ndarray]:
        """Every held step in stream order: arrays ``(len(self), *shape)``, global steps
        ``[total_steps - len(self), total_steps)`` (copies)."""
        return {key: self._slice(key, self._total - self._size, self._total) for key in self._arrays}

    def _slice(self, key: str, start: int, stop: int) -> np.ndarray:
        """Global steps ``[start, stop)`` of ``key`` (held in the ring), as ``(stop - start, *shape)``."""
        ring = self._arrays[key]
        a, b = start % self.capacity, stop % self.capacity
        if stop - start == 0:
            return ring[:0].copy()
        if a < b:
            return ring[a:b].copy()
        return np.concatenate([ring[a:], ring[:b]])

    # ------------------------------------------------------------------ RNG state
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the sampling RNG (and counters, for information)."""
        return {"version": STATE_VERSION, "rng": self._rng.bit_generator.state, "total_steps": self._total}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the sampling RNG from :meth:`state_dict`, so sampling resumes reproducibly."""
        try:
            rng_state = dict(state["rng"])
            generator = np.random.Generator(np.random.PCG64())
            generator.bit_generator.state = rng_state
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a replay state dict ({exc!r})") from exc
        self._rng = generator

    # ------------------------------------------------------------------ truncation
    def truncate(self, total: int) -> None:
        """Discard every step with global index ``>= total``, in memory and on disk, so the stream
        continues from ``total`` (used on resume to return to the checkpointed replay).

        Pending steps are written first; a chunk straddling ``total`` is rewritten shortened (atomically,
        then the old one is deleted) and the newest ``capacity`` steps before ``total`` are reloaded. If
        no chunk remains on disk the stream still continues from ``total``.
        """
        total = int(total)
        if not 0 <= total <= self._total:
            raise ValueError(
                f"cannot truncate the replay in {self.directory} to {total} steps: its stream ends at step "
                f"{self._total} (chunk files of the checkpointed replay are missing): point --logdir "
                "elsewhere"
            )
        if total == self._total:
            return
        self._write_chunk()
        for chunk in list(self._chunks):
            if chunk.first >= total:
                chunk.path.unlink(missing_ok=True)
            elif chunk.end > total:
                with np.load(chunk.path, allow_pickle=False) as data:
                    kept = {key: data[key][: total - chunk.first] for key in data.files}
                self._atomic_save(chunk_name(chunk.first, total - chunk.first), kept)
                chunk.path.unlink(missing_ok=True)
        self._reset()
        self._load()
        if self._total < total:  # nothing (or too little) left on disk: keep the stream's numbering
            self._total = self._flushed = total
            self._size = 0

    # ------------------------------------------------------------------ disk
    def _reset(self) -> None:
        self._arrays = {}
        self._total = self._flushed = self._size = 0
        self._chunks = deque()
        self._episode_starts = deque()
        self._bounds = None

    def _atomic_save(self, name: str, arrays: Mapping[str, np.ndarray]) -> Path:
        """Write ``arrays`` to ``directory/name`` atomically (:func:`wmsim.fileio.atomic_write`)."""

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

        return atomic_write(self.directory / name, write)

    def _write_chunk(self) -> None:
        start, stop = self._flushed, self._total
        if stop == start:
            return
        arrays = {key: self._slice(key, start, stop) for key in self._arrays}
        path = self._atomic_save(chunk_name(start, stop - start), arrays)
        self._chunks.append(_Chunk(start, stop - start, path))
        self._flushed = stop
        self._evict_disk()

    def _evict_disk(self) -> None:
        """Delete chunk files whose every step is older than ``total_steps - capacity``."""
        oldest = self._total - self.capacity
        while self._chunks and self._chunks[0].end <= oldest:
            self._chunks.popleft().path.unlink(missing_ok=True)

    def _scan(self) -> list[_Chunk]:
        """Chunk files of the directory (stale temp files deleted), sorted by first index, longest first."""
        chunks = []
        for path in self.directory.iterdir():
            if is_temporary(path.name):
                log.info("deleting stale temporary replay file %s", path)
                path.unlink(missing_ok=True)
                continue
            match = CHUNK_PATTERN.match(path.name)
            if match and path.is_file():
                chunks.append(_Chunk(int(match.group(1)), int(match.group(2)), path))
        chunks.sort(key=lambda c: (c.first, -c.length))
        return chunks

    def _contiguous_tail(self, chunks: list[_Chunk]) -> list[_Chunk]:
        """The contiguous run of chunks after the last gap; drops duplicates, raises on overlaps."""
        tail: list[_Chunk] = []
        for chunk in chunks:
            if tail and chunk.end <= tail[-1].end:
                log.info("deleting replay chunk %s: its steps are in %s", chunk.path.name, tail[-1].path.name)
                chunk.path.unlink(missing_ok=True)
                continue
            if tail and chunk.first < tail[-1].end:
                raise ReplayError(
                    f"replay chunks {tail[-1].path} and {chunk.path} overlap: this directory was not "
                    "written by one replay; delete the wrong chunk or point --logdir elsewhere"
                )
            if tail and chunk.first > tail[-1].end:
                log.warning(
                    "replay %s: steps %d..%d are missing (no chunk file); deleting the %d chunk(s) "
                    "before the gap, which cannot be joined to the stream",
                    self.directory,
                    tail[-1].end,
                    chunk.first - 1,
                    len(tail),
                )
                for old in tail:
                    old.path.unlink(missing_ok=True)
                tail = []
            tail.append(chunk)
        return tail

    def _read(self, chunk: _Chunk) -> dict[str, np.ndarray]:
        """A chunk's arrays, checked against its name and the replay's layout (raises _ChunkUnreadable)."""
        try:
            with np.load(chunk.path, allow_pickle=False) as data:
                arrays = {key: np.asarray(data[key]) for key in data.files}
        except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, ...
            raise _ChunkUnreadable(f"{type(exc).__name__}: {exc}") from exc
        if not arrays:
            raise _ChunkUnreadable("it holds no arrays")
        for key, value in arrays.items():
            if value.ndim == 0 or len(value) != chunk.length:
                raise _ChunkUnreadable(
                    f"array {key!r} has shape {value.shape}, but the name promises {chunk.length} steps"
                )
        if self._arrays:
            if arrays.keys() != self._arrays.keys():
                raise _ChunkUnreadable(f"keys {sorted(arrays)} differ from {sorted(self._arrays)}")
            for key, ring in self._arrays.items():
                value = arrays[key]
                if value.dtype != ring.dtype or value.shape[1:] != ring.shape[1:]:
                    raise _ChunkUnreadable(
                        f"array {key!r} is {value.dtype} {value.shape[1:]}, "
                        f"other chunks hold {ring.dtype} {ring.shape[1:]}"
                    )
        return arrays

    def _load(self) -> None:
        """Load the newest ``capacity`` steps of the directory's contiguous chunk stream."""
        tail = self._contiguous_tail(self._scan())
        if not tail:
            return
        try:
            newest = self._read(tail[-1])
        except _ChunkUnreadable as exc:
            bad = tail.pop()
            quarantine = bad.path.with_name(bad.path.name + CORRUPT_SUFFIX)
            log.warning(
                "replay chunk %s is unreadable (%s): renamed to %s; the replay resumes without its %d steps",
                bad.path,
                exc,
                quarantine.name,
                bad.length,
            )
            os.replace(bad.path, quarantine)
            if not tail:
                return
            newest = self._read_or_raise(tail[-1])
        end = tail[-1].end
        oldest = max(end - self.capacity, tail[0].first)
        for chunk in tail:
            if chunk.end <= oldest:  # evicted: wholly older than the newest capacity steps
                chunk.path.unlink(missing_ok=True)
        kept = [chunk for chunk in tail if chunk.end > oldest]
        self._allocate({key: value[0] for key, value in newest.items()})
        for chunk in reversed(kept):
            arrays = newest if chunk is kept[-1] else self._read_or_raise(chunk)
            skip = max(0, oldest - chunk.first)
            for key, value in arrays.items():
                self._put(key, chunk.first + skip, value[skip:])
        self._chunks = deque(kept)
        self._total = self._flushed = end
        self._size = end - oldest
        self._episode_starts = deque(self._held_episode_starts())
        self._bounds = None

    def _held_episode_starts(self) -> list[int]:
        """Global indices of the held steps whose ``is_first`` is set, oldest first."""
        if "is_first" not in self._arrays:
            return []
        oldest = self._total - self._size
        flags = self._slice("is_first", oldest, self._total).astype(bool).reshape(self._size, -1).any(-1)
        return (oldest + np.flatnonzero(flags)).tolist()

    def _read_or_raise(self, chunk: _Chunk) -> dict[str, np.ndarray]:
        try:
            return self._read(chunk)
        except _ChunkUnreadable as exc:
            raise ReplayError(
                f"replay chunk {chunk.path} is unreadable ({exc}). It is not the newest chunk, so a crash "
                "cannot explain it: delete it (the replay then keeps the chunks after it) or point --logdir "
                "elsewhere"
            ) from exc

    def _put(self, key: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` (at most ``capacity`` steps) as global steps ``[start, start + len(values))``."""
        ring = self._arrays[key]
        a = start % self.capacity
        first = min(len(values), self.capacity - a)
        ring[a : a + first] = values[:first]
        ring[: len(values) - first] = values[first:]
