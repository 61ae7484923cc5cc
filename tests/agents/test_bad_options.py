"""Every bad option is refused before any work, with one line that names the option and the allowed
range; file system errors name the path instead of ending in a traceback."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import pytest
from safetensors import SafetensorError

from agents.cli import main
from agents.config import train_preset
from agents.offline import PretrainConfig
from wmsim.config import apply_overrides

TRAIN = ["train", "--preset", "tiny", "--quiet", "--no-eval"]
PRETRAIN = ["pretrain", "--preset", "tiny", "--env", "CartPole-v1", "--quiet"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*TRAIN, "--eval_every", "0"], "eval_every=0 must be an integer >= 1"),
        ([*TRAIN, "--checkpoint_every", "0"], "checkpoint_every=0 must be an integer >= 1"),
        ([*TRAIN, "--eval_episodes", "0"], "eval_episodes=0 must be an integer >= 1"),
        ([*TRAIN, "--start_states", "0"], "start_states=0 must be an integer >= 1"),
        ([*TRAIN, "--prefill", "-1"], "prefill=-1 must be an integer >= 0"),
        ([*TRAIN, "--model.rssm.deter", "0"], "model.rssm.deter=0 must be an integer >= 1"),
        ([*TRAIN, "--model.encoder.mlp_units", "-4"], "model.encoder.mlp_units=-4 must be an integer >= 1"),
        ([*TRAIN, "--agent.horizon", "15", "--model.reward_head.layers", "-1"], "reward_head.layers=-1"),
        ([*PRETRAIN, "--updates", "-5"], "updates=-5 must be an integer >= 1"),
        ([*PRETRAIN, "--updates", "0"], "updates=0 must be an integer >= 1"),
        ([*PRETRAIN, "--batch_size", "0"], "batch_size=0 must be an integer >= 1"),
        ([*PRETRAIN, "--data_steps", "0"], "data_steps=0 must be an integer >= seq_len (50)"),
        ([*PRETRAIN, "--start_states", "0"], "start_states=0 must be an integer >= 1"),
        ([*PRETRAIN, "--checkpoint_every", "0"], "checkpoint_every=0 must be an integer >= 1"),
        ([*PRETRAIN, "--model.rssm.deter", "0"], "model.rssm.deter=0 must be an integer >= 1"),
        ([*PRETRAIN, "--behaviour", "walk"], "unknown behaviour 'walk'"),
        (["quickstart", "--episodes", "0"], "episodes=0 must be an integer >= 1"),
        (["quickstart", "--time_limit", "-1"], "time_limit=-1 must be an integer >= 0"),
    ],
)
def test_a_bad_config_option_is_refused_before_any_work(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logdir = tmp_path / "run"
    where = ["--out", str(logdir)] if argv[0] == "quickstart" else ["--logdir", str(logdir)]
    assert main([*argv, *where]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not logdir.exists(), "the run started before the option was refused"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dream", "CartPole", "--dream-updates", "-1"], "--dream-updates: must be an integer"),
        (["train", "--dream", "CartPole", "--dream-pool", "0"], "--dream-pool: must be an integer >= 1"),
        (["eval", "CartPole", "--episodes", "0"], "--episodes: must be an integer >= 1, got 0"),
        (["evaluate", "CartPole", "--horizon", "0"], "--horizon: must be an integer >= 1, got 0"),
        (["watch", "CartPole", "--steps", "0"], "--steps: must be an integer >= 1, got 0"),
        (["add-data", "runs/x", "--policy", "CartPole", "--steps", "0"], "--steps: must be an integer >= 1"),
        (["train", "--dream", "CartPole", "--dream-eval-every", "-1"], "--dream-eval-every: must be an"),
        (["sweep", "cartpole-ppo-latent", "--jobs", "0"], "--jobs: must be an integer >= 1, got 0"),
        (["sweep", "cartpole-ppo-latent", "--seeds", "0", "-1"], "--seeds: must be an integer >= 0, got -1"),
        (["bench", "train", "--updates", "0"], "--updates: must be an integer >= 1, got 0"),
    ],
)
def test_a_bad_command_option_is_refused_while_parsing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_behaviour_the_env_cannot_play_is_refused_before_the_episodes() -> None:
    from agents.behaviours import check_behaviour

    check_behaviour("scripted", "CartPole-v1")
    with pytest.raises(ValueError, match=r"no scripted behaviour for 'Acrobot-v1'.*use --behaviour random"):
        check_behaviour("mixed", "Acrobot-v1")
    with pytest.raises(ValueError, match="unknown behaviour 'walk'"):
        check_behaviour("walk", "CartPole-v1")


def test_overrides_are_checked_together_and_name_their_option() -> None:
    # data_steps may shrink below the old seq_len when seq_len shrinks with it
    config = apply_overrides(PretrainConfig(), {"data_steps": 30, "seq_len": 20})
    assert (config.data_steps, config.seq_len) == (30, 20)
    with pytest.raises(ValueError, match=r"^model\.rssm\.classes=0 must be an integer >= 1$"):
        apply_overrides(train_preset("tiny"), {"model.rssm.classes": 0})
    with pytest.raises(ValueError, match="deter=0 must be an integer >= 1"):
        dataclasses.replace(train_preset("tiny").model.rssm, deter=0)


def test_a_logdir_that_is_a_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logdir = tmp_path / "run"
    logdir.write_text("not a folder")
    for argv in (TRAIN, [*PRETRAIN, "--data_steps", "100", "--seq_len", "8"]):
        assert main([*argv, "--logdir", str(logdir)]) == 2
        err = capsys.readouterr().err
        assert f"--logdir {logdir} is a file, not a folder" in err and len(err.splitlines()) == 1


def test_a_full_disk_at_a_checkpoint_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import wmsim.bundle

    real = wmsim.bundle.save_file

    def full_disk(tensors: object, path: str, **kwargs: object) -> None:
        if "modules.safetensors" in path:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(wmsim.bundle, "save_file", full_disk)
    argv = [*TRAIN, "--steps", "250", "--checkpoint_every", "250", "--learn_policy", "false"]
    assert main([*argv, "--logdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "checkpoints/step-000000000250: No space left on device" in err, err
    assert len(err.strip().splitlines()) == 1


def test_export_onnx_into_a_folder_it_cannot_write_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "readonly" / "graphs"
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if str(self).startswith(str(tmp_path / "readonly")):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["export-onnx", "CartPole", "--out", str(out), "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: Permission denied" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_bench_results_go_to_a_new_folder_or_are_refused_before_any_timing(tmp_path: Path) -> None:
    from agents.cli import _results_folder

    _results_folder(str(tmp_path / "new" / "deeper" / "train.json"))
    assert (tmp_path / "new" / "deeper").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match=r"--json .*file/x.json: cannot create the folder"):
        _results_folder(str(tmp_path / "file" / "x.json"))
