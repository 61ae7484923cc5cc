"""The on-disk sequence replay: sampling, eviction, reload, crash safety and clear errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from agents.replay import CHUNK_PATTERN, Replay, ReplayError, chunk_name


def _step(
    index: int, *, image: bool = False, episode_length: int = 7, action_size: int = 2, flags: bool = True
) -> dict:
    """Step ``index`` of a stream of ``episode_length``-step episodes; the global index is stored in
    ``reward`` and in the observation so tests can check which steps a window holds. ``flags=False``
    leaves out the episode flags (the stream is then one long episode)."""
    first = index % episode_length == 0
    last = index % episode_length == episode_length - 1
    obs = np.full((8, 8, 1), index % 256, np.uint8) if image else np.array([index, -index, 0.5], np.float32)
    step = {
        "obs": obs,
        "action": np.full(action_size, 0.0 if first else index % 3, np.float32),
        "reward": np.float32(0.0 if first else index),
        "index": np.int64(index),
    }
    if flags:
        step.update(is_first=first, is_last=last, is_terminal=last and index % 2 == 0)
    return step


def _fill(replay: Replay, start: int, stop: int, **kwargs: object) -> None:
    for index in range(start, stop):
        replay.add(_step(index, **kwargs))  # type: ignore[arg-type]


def _chunk_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if CHUNK_PATTERN.match(p.name))


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("image", [False, True])
def test_sample_shapes_and_dtypes(tmp_path: Path, image: bool) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=16)
    _fill(replay, 0, 60, image=image)
    batch = replay.sample(5, 10)
    assert batch["obs"].shape == ((5, 10, 8, 8, 1) if image else (5, 10, 3))
    assert batch["obs"].dtype == (np.uint8 if image else np.float32)
    assert batch["action"].shape == (5, 10, 2) and batch["action"].dtype == np.float32
    assert batch["reward"].shape == (5, 10) and batch["reward"].dtype == np.float32
    for key in ("is_first", "is_last", "is_terminal"):
        assert batch[key].shape == (5, 10) and batch[key].dtype == np.bool_
    assert len(replay) == 60 and replay.total_steps == 60 and replay.flushed_steps == 48


def test_python_scalars_are_stored_with_the_first_steps_dtypes(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=10)
    replay.add({"obs": np.zeros(2, np.float32), "reward": 0.0, "is_first": True})
    replay.add({"obs": np.ones(2, np.float32), "reward": 1, "is_first": np.bool_(False)})
    contents = replay.contents()
    assert contents["reward"].dtype == np.float32 and contents["is_first"].dtype == np.bool_
    np.testing.assert_array_equal(contents["reward"], [0.0, 1.0])


def test_without_episode_flags_windows_are_consecutive_in_the_stream_across_wraparound(
    tmp_path: Path,
) -> None:
    replay = Replay(tmp_path, capacity=37, chunk_length=5, seed=3)
    # Check while filling (ring not full) and after several wrap-arounds of the ring.
    for stop in (20, 37, 50, 111, 200):
        _fill(replay, replay.total_steps, stop, flags=False)
        batch = replay.sample(64, 12)
        index = batch["index"]
        np.testing.assert_array_equal(np.diff(index, axis=1), 1)
        assert index.min() >= stop - len(replay) and index.max() < stop
        np.testing.assert_array_equal(batch["obs"][..., 0], index.astype(np.float32))
    assert len(replay) == 37
    # Every valid start is reachable (uniform over [oldest, total - T]).
    starts = np.concatenate([replay.sample(256, 12)["index"][:, 0] for _ in range(20)])
    assert set(starts.tolist()) == set(range(200 - 37, 200 - 12 + 1))


def test_window_of_the_whole_ring_is_the_stream_in_order(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=10, chunk_length=3)
    _fill(replay, 0, 27, flags=False)
    batch = replay.sample(3, 10)
    np.testing.assert_array_equal(batch["index"], np.tile(np.arange(17, 27), (3, 1)))


def _fill_episodes(replay: Replay, lengths: list[int]) -> list[tuple[int, int]]:
    """Episodes of the given lengths (first step flagged); returns their (first, end) global steps."""
    bounds = []
    for length in lengths:
        begin = replay.total_steps
        for t in range(length):
            step = _step(begin + t, flags=False)
            step.update(is_first=t == 0, is_last=t == length - 1, is_terminal=t == length - 1)
            replay.add(step)
        bounds.append((begin, begin + length))
    return bounds


def _pieces(index: np.ndarray, first: np.ndarray) -> list[np.ndarray]:
    """A row's windows: the row split where ``is_first`` is set."""
    cuts = np.flatnonzero(first)
    assert cuts[0] == 0, "every row starts a window"
    return np.split(index, cuts[1:])


def test_rows_are_windows_inside_episodes_each_starting_with_is_first(tmp_path: Path) -> None:
    # DreamerV2's replay: pick an episode, then a window inside it, flagged is_first; short episodes
    # are followed by another window. Lengths 3..40, so some episodes are shorter than a row.
    replay = Replay(tmp_path, capacity=10_000, chunk_length=64, seed=2)
    bounds = _fill_episodes(replay, [3 + (7 * i) % 38 for i in range(60)])
    episode_of = {step: e for e, (begin, end) in enumerate(bounds) for step in range(begin, end)}
    batch = replay.sample(256, 20)
    seen_offsets = set()
    for index, first in zip(batch["index"], batch["is_first"], strict=True):
        pieces = _pieces(index, first)
        for k, piece in enumerate(pieces):
            np.testing.assert_array_equal(np.diff(piece), 1)  # consecutive steps ...
            episodes = {episode_of[int(i)] for i in piece}
            assert len(episodes) == 1, "a window never crosses into another episode"
            begin, end = bounds[episodes.pop()]
            remaining = 20 - sum(len(p) for p in pieces[:k])
            assert len(piece) == min(end - begin, remaining)  # as long as the episode and row allow
            seen_offsets.add((begin, int(piece[0]) - begin))
    # Windows start mid-episode too, not only at episode starts.
    assert any(offset > 0 for _, offset in seen_offsets)


def test_a_window_in_a_partly_evicted_episode_still_starts_with_is_first(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=50, chunk_length=8, seed=0)
    _fill_episodes(replay, [45, 45])  # the ring holds the last 5 steps of the first episode
    batch = replay.sample(64, 30)
    assert batch["is_first"][:, 0].all()
    assert batch["index"].min() >= 40


def test_prioritize_ends_samples_the_last_steps_more_often(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=10_000, seed=4)
    _fill_episodes(replay, [100] * 20)
    plain = replay.sample(2000, 10)["is_last"].mean()
    ends = replay.sample(2000, 10, prioritize_ends=True)["is_last"].mean()
    # Uniform windows hold an episode's last step in 1 of 91 places; prioritize_ends adds 10 more
    # chances for the last window: 11 of 101. Per step: 1/910 against 11/1010.
    assert plain == pytest.approx(1 / 910, rel=0.5)
    assert ends == pytest.approx(11 / 1010, rel=0.2)


def test_episodes_are_picked_in_proportion_to_their_steps(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=10_000, seed=5)
    bounds = _fill_episodes(replay, [10, 90])
    index = replay.sample(4000, 5)["index"]
    share_long = (index >= bounds[1][0]).mean()
    assert share_long == pytest.approx(0.9, abs=0.03)


def test_capacity_evicts_in_memory_and_on_disk(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=50, chunk_length=10)
    _fill(replay, 0, 135)
    assert len(replay) == 50 and replay.total_steps == 135 and replay.flushed_steps == 130
    assert replay.contents()["index"].tolist() == list(range(85, 135))
    # Chunks wholly older than step 85 are deleted; 80-89 still holds needed steps.
    assert _chunk_files(tmp_path) == [chunk_name(first, 10) for first in range(80, 130, 10)]


def test_chunk_length_larger_than_capacity_never_loses_pending_steps(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=8, chunk_length=100)
    _fill(replay, 0, 30)
    assert replay.flushed_steps == 24
    replay.flush()
    reloaded = Replay(tmp_path, capacity=8, chunk_length=100)
    _assert_same(replay.contents(), reloaded.contents())


def test_reload_restores_contents_and_total_steps(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=64, chunk_length=9)
    _fill(replay, 0, 150, image=True)
    replay.flush()
    reloaded = Replay(tmp_path, capacity=64, chunk_length=9)
    assert reloaded.total_steps == 150 and reloaded.flushed_steps == 150 and len(reloaded) == 64
    _assert_same(replay.contents(), reloaded.contents())
    # Same RNG state -> the same batches.
    reloaded.load_state_dict(json.loads(json.dumps(replay.state_dict())))
    _assert_same(replay.sample(4, 16), reloaded.sample(4, 16))


def test_reload_with_smaller_capacity_keeps_the_newest_steps(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 95)
    replay.flush()
    reloaded = Replay(tmp_path, capacity=23, chunk_length=10)
    assert reloaded.total_steps == 95 and len(reloaded) == 23
    assert reloaded.contents()["index"].tolist() == list(range(72, 95))
    assert _chunk_files(tmp_path)[0] == chunk_name(70, 10)


def test_flush_writes_the_partial_chunk_and_empty_flush_does_nothing(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 13)
    assert _chunk_files(tmp_path) == [chunk_name(0, 10)]
    replay.flush()
    assert _chunk_files(tmp_path) == [chunk_name(0, 10), chunk_name(10, 3)]
    assert replay.flushed_steps == 13
    replay.flush()
    assert _chunk_files(tmp_path) == [chunk_name(0, 10), chunk_name(10, 3)]
    _fill(replay, 13, 25)  # chunks continue from the partial one: 13..22, then 23..24 pending
    assert _chunk_files(tmp_path)[-1] == chunk_name(13, 10)
    reloaded = Replay(tmp_path, capacity=100)
    assert reloaded.total_steps == 23
    assert reloaded.contents()["index"].tolist() == list(range(23))


def test_crash_without_flush_loses_only_pending_steps_and_continues_without_collision(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=1000, chunk_length=8)
    _fill(replay, 0, 21)
    del replay  # dropped without flush: steps 16..20 were never written
    reloaded = Replay(tmp_path, capacity=1000, chunk_length=8)
    assert reloaded.total_steps == 16 and len(reloaded) == 16
    assert reloaded.contents()["index"].tolist() == list(range(16))
    _fill(reloaded, 16, 40)  # the stream continues with the next global index
    reloaded.flush()
    names = _chunk_files(tmp_path)
    assert names == [
        chunk_name(0, 8),
        chunk_name(8, 8),
        chunk_name(16, 8),
        chunk_name(24, 8),
        chunk_name(32, 8),
    ]
    again = Replay(tmp_path, capacity=1000)
    assert again.contents()["index"].tolist() == list(range(40))


def test_stale_temp_file_is_ignored_and_deleted(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 10)
    stale = tmp_path / ".tmp-deadbeef.npz"  # an older wmsim's temporary name
    stale.write_bytes(b"PK\x03\x04 half a zip")
    killed = tmp_path / ".000000000010-000010.npz.0123456789ab.tmp"  # a killed atomic write's
    killed.write_bytes(b"PK\x03\x04 half a zip")
    reloaded = Replay(tmp_path, capacity=100, chunk_length=10)
    assert not stale.exists() and not killed.exists()
    assert reloaded.total_steps == 10
    assert [p.name for p in tmp_path.iterdir()] == ["000000000000-000010.npz"]


def _truncate_file(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_newest_chunk_is_set_aside_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 30, image=True)
    _truncate_file(tmp_path / chunk_name(20, 10))
    with caplog.at_level(logging.WARNING, logger="agents.replay"):
        reloaded = Replay(tmp_path, capacity=100, chunk_length=10)
    assert "unreadable" in caplog.text and chunk_name(20, 10) in caplog.text
    assert reloaded.total_steps == 20
    assert reloaded.contents()["index"].tolist() == list(range(20))
    assert (tmp_path / (chunk_name(20, 10) + ".corrupt")).exists()
    _fill(reloaded, 20, 30, image=True)  # rewrites steps 20..29 under a fresh chunk file
    assert Replay(tmp_path, capacity=100).total_steps == 30


def test_truncated_older_chunk_raises_naming_the_file(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 30)
    bad = tmp_path / chunk_name(10, 10)
    _truncate_file(bad)
    with pytest.raises(ReplayError, match=r"delete it .* or point --logdir elsewhere") as info:
        Replay(tmp_path, capacity=100)
    assert str(bad) in str(info.value)


def test_chunk_with_wrong_keys_raises(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 20)
    np.savez_compressed(tmp_path / chunk_name(0, 10), obs=np.zeros((10, 3), np.float32))
    with pytest.raises(ReplayError, match=r"000000000000-000010\.npz.*keys"):
        Replay(tmp_path, capacity=100)


def test_missing_chunk_keeps_the_contiguous_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 40)
    (tmp_path / chunk_name(10, 10)).unlink()
    with caplog.at_level(logging.WARNING, logger="agents.replay"):
        reloaded = Replay(tmp_path, capacity=100, chunk_length=10)
    assert "missing" in caplog.text
    assert reloaded.total_steps == 40 and reloaded.contents()["index"].tolist() == list(range(20, 40))
    assert _chunk_files(tmp_path) == [chunk_name(20, 10), chunk_name(30, 10)]


def test_overlapping_chunks_raise(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 20)
    # A stray chunk claiming steps 5..14 overlaps both 0..9 and 10..19.
    (tmp_path / "000000000005-000010.npz").write_bytes((tmp_path / chunk_name(10, 10)).read_bytes())
    with pytest.raises(ReplayError, match="overlap"):
        Replay(tmp_path, capacity=100)


def test_truncate_returns_to_an_earlier_stream_position(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 25)
    replay.flush()
    checkpoint = replay.contents()
    _fill(replay, 25, 47)  # written after the "checkpoint": 25..34, 35..44 on disk, 45..46 pending
    reloaded = Replay(tmp_path, capacity=100, chunk_length=10)
    reloaded.truncate(25)
    assert reloaded.total_steps == 25 and reloaded.flushed_steps == 25
    _assert_same(checkpoint, reloaded.contents())
    assert _chunk_files(tmp_path) == [chunk_name(0, 10), chunk_name(10, 10), chunk_name(20, 5)]
    _fill(reloaded, 25, 30)
    reloaded.truncate(27)  # in the middle of the pending steps
    assert reloaded.contents()["index"].tolist() == list(range(27))
    reloaded.truncate(0)
    assert len(reloaded) == 0 and reloaded.total_steps == 0 and _chunk_files(tmp_path) == []
    with pytest.raises(ValueError, match="cannot truncate"):
        reloaded.truncate(5)


def test_interrupted_truncate_leaves_a_loadable_directory(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, chunk_length=10)
    _fill(replay, 0, 20)
    # As if killed after writing the shortened chunk but before deleting the old one.
    with np.load(tmp_path / chunk_name(10, 10)) as data:
        np.savez_compressed(tmp_path / chunk_name(10, 4), **{k: data[k][:4] for k in data.files})
    reloaded = Replay(tmp_path, capacity=100)
    assert reloaded.total_steps == 20 and _chunk_files(tmp_path) == [chunk_name(0, 10), chunk_name(10, 10)]


def test_too_few_steps_error(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100)
    _fill(replay, 0, 5)
    with pytest.raises(ValueError, match=r"replay holds 5 steps, need at least 10: .*prefill"):
        replay.sample(2, 10)
    with pytest.raises(ValueError, match="replay holds 0 steps"):
        Replay(tmp_path / "empty", capacity=10).sample(1, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"obs": np.zeros(4, np.float32)}, r"'obs': expected float32 of shape \(3,\), got .* shape \(4,\)"),
        ({"obs": np.zeros(3, np.float64)}, r"'obs': expected float32 of shape \(3,\), got float64"),
        ({"is_first": 0.5}, r"'is_first': expected bool"),
        ({"extra": np.zeros(1)}, r"unexpected key\(s\) \['extra'\]"),
        ({"reward": None}, r"missing key\(s\) \['reward'\]"),
    ],
)
def test_inconsistent_step_is_refused_with_a_clear_error(tmp_path: Path, change: dict, message: str) -> None:
    replay = Replay(tmp_path, capacity=10)
    _fill(replay, 0, 3)
    step = {**_step(3), **change}
    if change.get("reward", 0) is None:
        del step["reward"]
    with pytest.raises(ValueError, match=message):
        replay.add(step)
    assert replay.total_steps == 3  # nothing was added


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="capacity"):
        Replay(tmp_path, capacity=0)
    with pytest.raises(ValueError, match="chunk_length"):
        Replay(tmp_path, capacity=10, chunk_length=0)
    with pytest.raises(ValueError, match="not a replay state"):
        Replay(tmp_path, capacity=10).load_state_dict({"rng": 3})


def test_state_dict_is_json_and_resumes_sampling(tmp_path: Path) -> None:
    replay = Replay(tmp_path, capacity=100, seed=7)
    _fill(replay, 0, 50)
    replay.sample(3, 5)
    state = json.loads(json.dumps(replay.state_dict()))
    expected = replay.sample(8, 5)
    replay.load_state_dict(state)
    _assert_same(expected, replay.sample(8, 5))
