"""Offline datasets in Minari's format: ``wmsim export-dataset`` writes a pretraining run's data with
Minari's metadata, ``wmsim pretrain --dataset`` fits on it (the replay it fills is the original, step for
step), and a bad dataset is refused with the problem and the fix. All local: no Hub, no Minari remote."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import offline
from agents.cli import main
from agents.datasets import Episode, replay_episodes, write_dataset
from agents.replay import Replay
from wmsim.bundle import load_bundle
from wmsim.envs import EnvSpec, make_env
from wmsim.world_model import IOSpec

minari = pytest.importorskip("minari", reason="pip install 'wmsim[minari]'")

CARTPOLE = ["--preset", "tiny", "--env", "CartPole-v1", "--seq_len", "8", "--quiet"]
TASKS = "dmc/cartpole-swingup,dmc/reacher-easy"


def _contents(folder: Path) -> dict[str, np.ndarray]:
    return Replay(folder, 1_000_000).contents()


def _same_steps(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


@pytest.fixture(scope="module", autouse=True)
def no_remote() -> Iterator[None]:
    """Minari's remotes (the Hub, cloud storage) are never reached: any use of them fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Minari remote was used")

    with pytest.MonkeyPatch.context() as patch:
        for module in ("minari.storage.hosting", "minari.namespace", "minari.storage.remotes"):
            patch.setattr(f"{module}.get_cloud_storage", refuse)
        patch.setattr("minari.storage.hosting.download_dataset", refuse)
        yield


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CartPole run of random play (many short episodes, discrete actions) and its export."""
    root = tmp_path_factory.mktemp("cartpole")
    args = ["pretrain", *CARTPOLE, "--behaviour", "random", "--data_steps", "300", "--updates", "2"]
    assert main([*args, "--logdir", str(root / "run")]) == 0
    assert main(["export-dataset", str(root / "run"), "--out", str(root / "data")]) == 0
    return root


def test_export_writes_a_minari_dataset_with_its_metadata(
    cartpole: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = json.loads((cartpole / "run" / "dataset.json").read_text())
    # DIR is a Minari root: Minari's own loader finds the dataset by its id, offline
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(cartpole / "data"))
    assert list(minari.list_local_datasets()) == ["wmsim/CartPole-v1/random-v0"]
    dataset = minari.load_dataset("wmsim/CartPole-v1/random-v0")
    metadata = dataset.storage.metadata
    assert metadata["algorithm_name"] == "random" and metadata["author"] == {"wmsim"}
    assert dataset.env_spec.id == "CartPole-v1"  # the registered Gymnasium env: wmsim's is that env
    env = make_env("CartPole-v1")
    assert dataset.observation_space == env.observation_space and dataset.action_space == env.action_space
    assert dataset.total_episodes == record["episodes"] > 5
    assert dataset.total_steps == record["steps"] - record["episodes"]  # the replay adds a first step
    assert metadata["wmsim"]["env"] == EnvSpec.from_id("CartPole-v1").to_dict()
    # every episode as Minari expects it: T + 1 observations, T of the rest, the end flagged
    ours = replay_episodes(
        _contents(cartpole / "run" / "replay"), IOSpec.from_spaces(env.observation_space, env.action_space)
    )
    assert len(ours) == dataset.total_episodes
    for mine, theirs in zip(ours, dataset.iterate_episodes(), strict=True):
        steps = len(theirs)
        assert theirs.observations.shape == (steps + 1, 4) and theirs.actions.shape == (steps,)
        assert theirs.terminations[-1] or theirs.truncations[-1]
        assert not (theirs.terminations[:-1].any() or theirs.truncations[:-1].any())
        for key in ("observations", "actions", "rewards", "terminations", "truncations"):
            assert np.array_equal(getattr(mine, key), getattr(theirs, key)), key
    assert dataset.recover_environment().observation_space == env.observation_space


def test_pretrain_from_an_exported_dataset_fills_the_same_replay_and_resumes(
    cartpole: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logdir = cartpole / "again"
    args = ["pretrain", *CARTPOLE, "--dataset", str(cartpole / "data"), "--logdir", str(logdir)]
    assert main([*args, "--updates", "2", "--checkpoint_every", "1"]) == 0
    _same_steps(_contents(cartpole / "run" / "replay"), _contents(logdir / "replay"))
    record = json.loads((logdir / "dataset.json").read_text())
    original = json.loads((cartpole / "run" / "dataset.json").read_text())
    assert record["steps"] == original["steps"] and record["episodes"] == original["episodes"]
    assert record["behaviour"] == "random"
    source = record["source"]
    assert source["dataset_id"] == "wmsim/CartPole-v1/random-v0" and source["path"] == str(cartpole / "data")
    info = load_bundle(logdir / "bundle").info
    assert info["dataset"]["source"] == source and "wmsim/CartPole-v1/random-v0" in info["recipe"]
    assert "Minari dataset wmsim/CartPole-v1/random-v0" in (logdir / "bundle" / "README.md").read_text()
    # the same command resumes; the data is not loaded again
    with caplog.at_level("INFO"):
        assert main([*args, "--updates", "3"]) == 0
    assert "resumed" in caplog.text and "loaded wmsim" not in caplog.text
    assert load_bundle(logdir / "bundle").info["updates"] == 3
    # a run that is re-exported keeps saying where its data came from
    assert main(["export-dataset", str(logdir), "--out", str(cartpole / "again-data")]) == 0
    data = minari.MinariDataset(cartpole / "again-data" / "wmsim" / "CartPole-v1" / "random-v0" / "data")
    assert "wmsim/CartPole-v1/random-v0" in data.storage.metadata["description"]


def test_a_multi_task_run_exports_one_dataset_per_task_and_a_single_task_run_fits_on_one(
    tmp_path: Path,
) -> None:
    mt = ["pretrain", "--tasks", TASKS, "--preset", "tiny", "--behaviour", "mixed", "--data_steps", "300"]
    mt += ["--seq_len", "8", "--updates", "2", "--start_states", "4", "--quiet"]
    assert main([*mt, "--logdir", str(tmp_path / "mt")]) == 0
    assert main(["export-dataset", str(tmp_path / "mt"), "--out", str(tmp_path / "mt-data")]) == 0
    for task, behaviour in (("cartpole-swingup", "mixed"), ("reacher-easy", "random")):
        data = tmp_path / "mt-data" / task / "wmsim" / task / f"{behaviour}-v0" / "data"
        dataset = minari.MinariDataset(data)
        assert dataset.id == f"wmsim/{task}/{behaviour}-v0"
        assert dataset.env_spec.id == f"wmsim/dmc-{task}"  # rebuilt by wmsim.envs.make_env
        assert dataset.storage.metadata["algorithm_name"].startswith(behaviour)
    assert dataset.recover_environment().action_space.shape == (2,)  # reacher's, through wmsim
    # the main consumer: a single-task model on exactly one task's data of the multi-task run
    st = ["pretrain", "--env", "dmc/cartpole-swingup", "--env_obs", "state", "--preset", "tiny"]
    st += ["--dataset", str(tmp_path / "mt-data" / "cartpole-swingup"), "--seq_len", "8", "--updates", "2"]
    assert main([*st, "--logdir", str(tmp_path / "st"), "--quiet"]) == 0
    _same_steps(
        _contents(tmp_path / "mt" / "replay" / "cartpole-swingup"), _contents(tmp_path / "st" / "replay")
    )
    assert load_bundle(tmp_path / "st" / "bundle").info["dataset"]["source"]["dataset_id"] == (
        "wmsim/cartpole-swingup/mixed-v0"
    )
    # the multi-task run again from its export (the folder of one dataset per task): the same data,
    # the same seeds, so the same model
    again = [*mt, "--dataset", str(tmp_path / "mt-data"), "--logdir", str(tmp_path / "mt2")]
    assert main(again) == 0
    for task in ("cartpole-swingup", "reacher-easy"):
        _same_steps(
            _contents(tmp_path / "mt" / "replay" / task), _contents(tmp_path / "mt2" / "replay" / task)
        )
    first, second = (load_bundle(tmp_path / name / "bundle") for name in ("mt", "mt2"))
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    tasks = second.info["dataset"]["tasks"]
    assert tasks["reacher-easy"]["source"]["dataset_id"] == "wmsim/reacher-easy/random-v0"
    # one folder per task, in the order of --tasks, is the same
    folders = ",".join(str(tmp_path / "mt-data" / t) for t in ("cartpole-swingup", "reacher-easy"))
    assert main([*mt, "--dataset", folders, "--updates", "1", "--logdir", str(tmp_path / "mt3")]) == 0
    _same_steps(
        _contents(tmp_path / "mt" / "replay" / "reacher-easy"),
        _contents(tmp_path / "mt3" / "replay" / "reacher-easy"),
    )
    swapped = ",".join(reversed(folders.split(",")))  # reacher's data for cartpole: other spaces
    assert main([*mt, "--dataset", swapped, "--logdir", str(tmp_path / "mt4")]) == 2


def _write(root: Path, episodes: list[Episode]) -> Path:
    """A Minari dataset of CartPole's spaces holding ``episodes`` as they are (not checked)."""
    env = make_env("CartPole-v1")
    spec, spaces = EnvSpec.from_id("CartPole-v1"), (env.observation_space, env.action_space)
    return write_dataset(root, "test/data-v0", episodes, spec, *spaces, algorithm_name="test", description="")


def _episode(steps: int = 10, observations: int | None = None, action: int = 0) -> Episode:
    """A CartPole-shaped episode of ``steps`` steps (with ``observations`` observations, T + 1 if None)."""
    obs = np.zeros((steps + 1 if observations is None else observations, 4), np.float32)
    flags = np.zeros(steps, bool)
    return Episode(obs, np.full(steps, action, np.int64), np.ones(steps, np.float32), flags, flags.copy())


def test_bad_datasets_are_refused_with_the_problem_and_the_fix(
    cartpole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logdirs: list[Path] = []

    def refused(dataset: str | Path, *more: str, env: str = "CartPole-v1", early: bool = True) -> str:
        """The error of a run on ``dataset``; ``early``: found before the run wrote anything."""
        logdir = tmp_path / f"run{len(logdirs)}"
        logdirs.append(logdir)
        args = ["pretrain", *CARTPOLE, "--env", env, "--dataset", str(dataset), "--updates", "1", *more]
        assert main([*args, "--logdir", str(logdir)]) == 2
        assert not early or not logdir.exists(), "a dataset refused on opening leaves nothing behind"
        return capsys.readouterr().err

    good = cartpole / "data"
    # the spaces of another env: both named
    err = refused(good, env="Pendulum-v1")
    assert "has observations Box(" in err and "Discrete(2)" in err and "Box(-2.0, 2.0, (1,), float32)" in err
    assert "gym/Pendulum-v1" in err and "its env spec: CartPole-v1" in err
    # no folder, a file, a folder without a dataset, several datasets
    err = refused(tmp_path / "nowhere")
    assert "no such folder" in err and "wmsim export-dataset" in err
    assert "is a file, not a folder" in refused(cartpole / "run" / "dataset.json")
    assert "holds no Minari dataset" in refused(cartpole / "run")
    both = tmp_path / "both"
    shutil.copytree(good, both / "a")
    shutil.copytree(good, both / "b")
    assert "holds 2 Minari datasets" in refused(both)
    # foreign and damaged files
    data = good / "wmsim" / "CartPole-v1" / "random-v0" / "data"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "metadata.json").write_text('{"name": "not minari"}')
    assert "is not Minari metadata (it lacks dataset_id" in refused(foreign)
    (foreign / "metadata.json").write_text("\x00\x01 not json")
    assert "is not Minari metadata" in refused(foreign)
    damaged = tmp_path / "damaged"
    shutil.copytree(data, damaged)
    (damaged / "main_data.hdf5").write_bytes(b"garbage" * 100)
    err = refused(damaged)
    assert "is not a readable Minari dataset" in err and "write it again" in err
    # malformed episodes, found as they are read: the episode and the problem named
    err = refused(_write(tmp_path / "short", [_episode(observations=10)]), early=False)
    assert "episode 0 is malformed: observations have shape (10, 4), expected (11, 4)" in err
    early = _episode()
    early.terminations[1] = True
    err = refused(_write(tmp_path / "early", [_episode(), early]), early=False)
    assert "episode 1 is malformed: terminations[1] is true before the last step" in err
    err = refused(_write(tmp_path / "wild", [_episode(action=7)]), early=False)
    assert "actions are not all integers in [0, 2)" in err
    # the same --logdir takes a good dataset once the bad one is fixed or replaced
    assert (
        main(["pretrain", *CARTPOLE, "--dataset", str(good), "--updates", "1", "--logdir", str(logdirs[-1])])
        == 0
    )
    # too large for the replay (--data_steps + 100,000 steps), or too small for --seq_len
    record = json.loads((cartpole / "run" / "dataset.json").read_text())
    with monkeypatch.context() as patch:
        patch.setattr(offline, "replay_capacity", lambda config: config.data_steps)
        assert f"pass --data_steps {record['steps']}" in refused(good, "--data_steps", "50")
    assert "fewer than --seq_len 8" in refused(_write(tmp_path / "tiny", [_episode(steps=3)]))
    # without minari installed: how to install it
    monkeypatch.setitem(sys.modules, "minari", None)
    assert "pip install 'wmsim[minari]'" in refused(good)


def test_a_changed_dataset_under_a_run_is_refused_and_a_gone_one_resumes(
    cartpole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    shutil.copytree(cartpole / "data", folder)
    args = ["pretrain", *CARTPOLE, "--dataset", str(folder), "--logdir", str(tmp_path / "run")]
    assert main([*args, "--updates", "1"]) == 0
    shutil.rmtree(folder)
    _write(folder, [_episode()] * 3)
    assert main([*args, "--updates", "2"]) == 2
    assert "is not the dataset this run loaded" in capsys.readouterr().err
    shutil.rmtree(folder)  # gone: the replay still holds what the run loaded
    assert main([*args, "--updates", "2"]) == 0
    assert load_bundle(tmp_path / "run" / "bundle").info["updates"] == 2


def test_export_refuses_what_is_not_a_finished_run_and_an_occupied_folder(
    cartpole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export-dataset", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["export-dataset", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "holds no pretraining run" in capsys.readouterr().err
    assert main(["export-dataset", str(cartpole / "run"), "--out", str(cartpole / "data")]) == 2
    assert "already holds files" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--env", "CartPole-v1", "--dataset", "a,,b"], "an empty folder name"),
        (["--env", "CartPole-v1", "--dataset", "a,b"], "a single-task run takes one dataset folder"),
        (["--tasks", TASKS, "--dataset", "a,b,c"], "3 folders for 2 tasks"),
    ],
)
def test_a_bad_dataset_option_is_refused_before_any_work(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pretrain", "--preset", "tiny", *options, "--logdir", str(tmp_path / "run"), "--quiet"]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()
