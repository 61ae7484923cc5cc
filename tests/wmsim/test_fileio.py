"""Crash-safe writes: a killed write leaves the old file or folder complete, its temporaries are
recognised and cleaned, an interrupted folder swap is finished, and file system errors name the path."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wmsim.fileio import (
    WriteError,
    atomic_directory,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    ensure_directory,
    interrupted_swap,
    is_temporary,
    recover_directory,
    remove_temporaries,
)

ROOT = Path(__file__).resolve().parents[2]


def run_killed(code: str) -> None:
    """Run ``code`` in a child Python that ends with ``os._exit(9)`` (as SIGKILL: no cleanup runs)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr[-3000:]


def test_a_write_killed_midway_leaves_the_old_file_and_a_recognised_temporary(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    atomic_write_json(target, {"steps": 1})
    run_killed(
        "import os\n"
        "from wmsim.fileio import atomic_write\n"
        "def half(p):\n"
        "    p.write_text('{\"ste')\n"
        "    os._exit(9)\n"
        f"atomic_write({str(target)!r}, half)\n"
    )
    assert target.read_text() == '{\n  "steps": 1\n}'
    left = [p for p in tmp_path.iterdir() if p != target]
    assert len(left) == 1 and is_temporary(left[0].name), left
    assert remove_temporaries(tmp_path) == left
    assert sorted(tmp_path.iterdir()) == [target]


def test_an_error_inside_a_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.txt", "old")

    def fail(path: Path) -> None:
        path.write_text("new, half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def test_a_full_disk_names_the_path(tmp_path: Path) -> None:
    def full(path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=r"cannot write .*/x\.json: No space left on device") as error:
        atomic_write(tmp_path / "x.json", full)
    assert isinstance(error.value, OSError) and "\n" not in str(error.value)


def test_a_file_in_the_way_of_a_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "logdir").write_text("")
    with pytest.raises(WriteError, match=r"logdir .*/logdir is a file, not a folder"):
        ensure_directory(tmp_path / "logdir", "logdir")
    with pytest.raises(WriteError, match=r"logdir is a file, not a folder"):
        atomic_directory(tmp_path / "logdir", lambda folder: None)


def _folder(path: Path, **files: str) -> None:
    def write(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).write_text(text)

    atomic_directory(path, write, carry_over=lambda name: name not in files)


def test_a_folder_swap_keeps_carried_files_and_drops_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    _folder(target, a="1", b="1")
    (target / "extra.json").write_text("kept")
    (target / "sub").mkdir()
    (target / "sub" / "g.onnx").write_text("graph")
    (target / ".a.0123456789ab.tmp").write_text("junk of a killed write")
    _folder(target, a="2", b="2")
    assert {p.name for p in target.iterdir()} == {"a", "b", "extra.json", "sub"}
    assert (target / "a").read_text() == "2" and (target / "sub" / "g.onnx").read_text() == "graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_folder_write_killed_midway_leaves_the_old_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    _folder(target, a="old", b="old")
    run_killed(
        "import os\n"
        "from wmsim.fileio import atomic_directory\n"
        "def half(folder):\n"
        "    (folder / 'a').write_text('new')\n"
        "    os._exit(9)\n"
        f"atomic_directory({str(target)!r}, half)\n"
    )
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a": "old", "b": "old"}
    _folder(target, a="new", b="new")  # the next write cleans the killed one's staging folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_kill_between_the_two_renames_is_finished_by_recovery(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    _folder(target, a="old")
    run_killed(
        "import os\n"
        "import wmsim.fileio as f\n"
        "real = os.replace\n"
        "def replace(src, dst):\n"
        "    real(src, dst)\n"
        "    if str(dst).endswith('.old'):\n"
        "        os._exit(9)\n"
        "f.os.replace = replace\n"
        "def write(folder):\n"
        "    (folder / 'a').write_text('new')\n"
        f"f.atomic_directory({str(target)!r}, write)\n"
    )
    assert not target.exists()
    staged = interrupted_swap(target)
    assert staged is not None and (staged / "a").read_text() == "new"
    assert recover_directory(target)
    assert (target / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert not recover_directory(target)


@pytest.mark.parametrize(
    ("name", "temporary"),
    [
        (".model.safetensors.4f2a9c01b3de.tmp", True),
        (".tmp-8c1e", True),
        (".bundle.0123456789ab.old", True),
        (".latest.tmp", True),
        ("model.safetensors", False),
        ("000000000000-000128.npz", False),
        (".hidden", False),
        ("step-000000000300", False),
    ],
)
def test_temporary_names(name: str, temporary: bool) -> None:
    assert is_temporary(name) is temporary
