"""Nothing is lost at any kill point of `wmsim train` and `wmsim pretrain`: a child process is killed
(``os._exit``, which runs no cleanup, as SIGKILL) at a chosen moment of a write, and the same run
started again resumes from what the files hold, with one metrics row per step and no temporaries left.

The kill points are injected deterministically by patching the function that writes, in the child."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from agents.cli import main as cli_main
from agents.config import TrainConfig, train_preset
from agents.replay import CHUNK_PATTERN, Replay
from agents.train import Trainer, train
from wmsim.bundle import load_bundle
from wmsim.fileio import is_temporary

ROOT = Path(__file__).resolve().parents[2]

#: Patches run in the child before the run starts (each ends the child with exit code 9).
KILL_WRITING_RUN_JSON = """
import os, pathlib
real = pathlib.Path.write_text
def write_text(self, data, *args, **kwargs):
    if self.name == "run.json" or self.name.startswith(".run.json."):
        real(self, "", *args, **kwargs)  # the kill leaves the file empty
        os._exit(9)
    return real(self, data, *args, **kwargs)
pathlib.Path.write_text = write_text
"""
KILL_IN_SECOND_CHECKPOINT = """
import os
import wmsim.bundle as bundle
real = bundle.save_file
calls = []
def save_file(tensors, path, *args, **kwargs):
    real(tensors, path, *args, **kwargs)
    if "modules.safetensors" in str(path):
        calls.append(path)
        if len(calls) == 2:
            os._exit(9)  # the tensors are written, the state and the rename are not
bundle.save_file = save_file
"""
KILL_IN_SECOND_BUNDLE = """
import os
import wmsim.bundle as bundle
real = bundle.save_file
calls = []
def save_file(tensors, path, *args, **kwargs):
    real(tensors, path, *args, **kwargs)
    if "model.safetensors" in str(path):
        calls.append(path)
        if len(calls) == 2:
            os._exit(9)  # the weights are written, the start states and config.json are not
bundle.save_file = save_file
"""
KILL_AT_FIRST_CHECKPOINT = """
import importlib, os
def save_checkpoint(*args, **kwargs):
    os._exit(9)
for name in ("agents.train", "agents.offline"):  # (the package's `agents.train` is the function)
    importlib.import_module(name).save_checkpoint = save_checkpoint
"""


def _tiny(logdir: Path, **changes: object) -> TrainConfig:
    config = dataclasses.replace(
        train_preset("tiny"),
        logdir=str(logdir),
        steps=400,
        checkpoint_every=200,
        log_every=100,
        learn_policy=False,  # random actions: the fastest run that writes every file
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _killed(patch: str, run: str) -> None:
    """Run ``patch`` then ``run`` in a child Python, which must die in the patched write."""
    code = textwrap.dedent(patch) + "\n" + textwrap.dedent(run)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 9, f"the child was not killed where expected:\n{done.stderr[-3000:]}"


def _killed_train(patch: str, config: TrainConfig) -> None:
    run = f"""
    import dataclasses
    from agents.config import train_preset
    from agents.train import train
    config = dataclasses.replace(train_preset("tiny"), **{to_kwargs(config)!r})
    train(config, progress=False, evaluate=False)
    """
    _killed(patch, run)


def to_kwargs(config: TrainConfig) -> dict[str, object]:
    changed = ("logdir", "steps", "checkpoint_every", "log_every", "learn_policy")
    return {name: getattr(config, name) for name in changed}


def _leftovers(logdir: Path) -> list[str]:
    """Temporaries of killed writes anywhere in the run directory."""
    return sorted(str(p.relative_to(logdir)) for p in logdir.rglob("*") if is_temporary(p.name))


def _rows(logdir: Path, key: str) -> list[int]:
    lines = (logdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)[key] for line in lines if "eval_return" not in line]


def _events(logdir: Path) -> Counter[tuple[str, int]]:
    """How often each (tag, step) scalar appears over all TensorBoard event files of ``logdir``."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    seen: Counter[tuple[str, int]] = Counter()
    for file in logdir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(file)).Load():
            for value in event.summary.value:
                seen[(value.tag, event.step)] += 1
    return seen


def _replay_at(directory: Path, total: int) -> dict[str, np.ndarray]:
    replay = Replay(directory, capacity=100_000, chunk_length=128)
    contents, start = replay.contents(), replay.total_steps - len(replay)
    return {key: value[: total - start] for key, value in contents.items()}


# ---------------------------------------------------------------------------------------------- train
def test_a_kill_inside_the_write_of_run_json_leaves_the_run_resumable(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    first = train(_tiny(logdir, steps=200), progress=False, evaluate=False)
    _killed_train(KILL_WRITING_RUN_JSON, _tiny(logdir, steps=300))
    assert json.loads((logdir / "run.json").read_text())["steps"] == 200, "run.json was cut short"
    again = train(_tiny(logdir, steps=300), progress=False, evaluate=False)
    assert again.resumed_from == 200 and again.updates > first.updates
    assert _leftovers(logdir) == []


def test_a_kill_inside_a_checkpoint_write_resumes_from_the_one_before(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    _killed_train(KILL_IN_SECOND_CHECKPOINT, _tiny(logdir))
    assert [p.name for p in (logdir / "checkpoints").iterdir() if p.name.startswith("step-")] == [
        "step-000000000200"
    ]
    assert _leftovers(logdir), "the kill should have left a half-written checkpoint"
    state = json.loads((logdir / "checkpoints" / "step-000000000200" / "state.json").read_text())
    before = _replay_at(logdir / "replay", state["state"]["replay_total"])
    trainer = Trainer(_tiny(logdir), progress=False)
    assert trainer.resumed_from == 200 and _leftovers(logdir) == []
    after = _replay_at(logdir / "replay", state["state"]["replay_total"])
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    assert trainer.run().env_steps == 400
    trainer.close()


def test_a_kill_inside_a_bundle_write_leaves_the_previous_bundle_loadable(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    _killed_train(KILL_IN_SECOND_BUNDLE, _tiny(logdir))
    bundle = load_bundle(logdir / "bundle")  # the bundle of the first checkpoint, whole
    assert bundle.info["env_steps"] == 200
    assert _leftovers(logdir) == [] or all(name.startswith(".bundle.") for name in _leftovers(logdir))
    result = train(_tiny(logdir), progress=False, evaluate=False)
    assert result.env_steps == 400 and load_bundle(logdir / "bundle").info["env_steps"] == 400
    assert _leftovers(logdir) == []


def test_a_kill_before_the_first_checkpoint_leaves_one_row_and_one_event_per_step(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    _killed_train(KILL_AT_FIRST_CHECKPOINT, _tiny(logdir, steps=300, checkpoint_every=300))
    assert _rows(logdir, "env_step") == [100, 200, 300], "the killed run logged before dying"
    assert max(_events(logdir).values()) == 1
    result = train(_tiny(logdir, checkpoint_every=300), progress=False, evaluate=False)
    assert result.resumed_from is None, "no checkpoint: the run starts over"
    assert _rows(logdir, "env_step") == [100, 200, 300, 400]
    events = _events(logdir)
    assert events and set(events.values()) == {1}, [k for k, n in events.items() if n > 1][:5]
    assert {step for _, step in events} == {100, 200, 300, 400}


def test_a_corrupt_newest_replay_chunk_resumes_from_the_checkpoint_the_data_supports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logdir = tmp_path / "run"
    train(_tiny(logdir), progress=False, evaluate=False)  # checkpoints at 200 and 400
    newest = sorted(p for p in (logdir / "replay").iterdir() if CHUNK_PATTERN.match(p.name))[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        result = train(_tiny(logdir, steps=500), progress=False, evaluate=False)
    assert result.resumed_from == 200 and result.env_steps == 500
    assert "renamed to" in caplog.text and "needs replay steps that are lost" in caplog.text
    assert (logdir / "replay" / (newest.name + ".corrupt")).is_file()
    assert _rows(logdir, "env_step") == sorted(set(_rows(logdir, "env_step")))


# ---------------------------------------------------------------------------------------------- pretrain
def _pretrain_args(logdir: Path, updates: int) -> list[str]:
    return [
        "pretrain",
        "--preset",
        "tiny",
        "--env",
        "CartPole-v1",
        "--data_steps",
        "300",
        "--seq_len",
        "8",
        "--batch_size",
        "4",
        "--updates",
        str(updates),
        "--checkpoint_every",
        "60",
        "--logdir",
        str(logdir),
        "--quiet",
    ]


def _killed_pretrain(patch: str, args: list[str]) -> None:
    _killed(patch, f"from agents.cli import main\nmain({args!r})\n")


def test_pretrain_resumes_after_a_kill_inside_the_write_of_its_config(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    assert cli_main(_pretrain_args(logdir, 60)) == 0
    patch = KILL_WRITING_RUN_JSON.replace("run.json", "pretrain_config.json")
    _killed_pretrain(patch, _pretrain_args(logdir, 100))
    assert json.loads((logdir / "pretrain_config.json").read_text())["updates"] == 60
    assert cli_main(_pretrain_args(logdir, 100)) == 0
    assert load_bundle(logdir / "bundle").info["updates"] == 100
    assert _leftovers(logdir) == []


def test_a_damaged_pretrain_config_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "pretrain_config.json").write_text("")
    assert cli_main(_pretrain_args(logdir, 100)) == 2
    err = capsys.readouterr().err
    assert "pretrain_config.json is not a wmsim pretraining config" in err and "delete it" in err


def test_pretrain_killed_before_its_first_checkpoint_logs_each_update_once(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    _killed_pretrain(KILL_AT_FIRST_CHECKPOINT, _pretrain_args(logdir, 100))
    assert _rows(logdir, "update") == [50], "the killed run logged before dying"
    assert cli_main(_pretrain_args(logdir, 100)) == 0
    assert _rows(logdir, "update") == [50, 100]
