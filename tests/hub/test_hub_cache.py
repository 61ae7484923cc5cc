"""Model resolution against a Hub cache in the Hub's own layout, offline (``HF_HUB_OFFLINE=1``): by repo
id, pinned revision and pretrained name, the shipped fallback, and refused or missing repos."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from hubcache import add_snapshot, make_bundle
from huggingface_hub import constants

import hub
from wmsim import registry
from wmsim.bundle import load_bundle


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hf-cache"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return folder


@pytest.fixture
def two_revisions(tmp_path: Path, cache: Path) -> tuple[str, str]:
    """``owner/toy`` with an old commit tagged v1 and a new one on main (weights from other seeds)."""
    old = add_snapshot(cache, "owner/toy", make_bundle(tmp_path / "old", seed=1), refs=("v1",))
    new = add_snapshot(cache, "owner/toy", make_bundle(tmp_path / "new", seed=2), refs=("main",))
    return old, new


def _weights(path: Path) -> torch.Tensor:
    return load_bundle(path).model.state_dict()["rssm.gru.linear.weight"]


def test_resolves_repo_id_branch_tag_and_commit_from_the_cache(two_revisions: tuple[str, str]) -> None:
    old, new = two_revisions
    assert registry.resolve_model_dir("owner/toy").name == new
    assert registry.resolve_model_dir("owner/toy@v1").name == old
    assert registry.resolve_model_dir("owner/toy", revision=old).name == old
    assert not torch.equal(
        _weights(registry.resolve_model_dir("owner/toy")),
        _weights(registry.resolve_model_dir("owner/toy@v1")),
    )


def test_gym_make_takes_a_repo_id(two_revisions: tuple[str, str]) -> None:
    env = gym.make("wmsim/Dream", model="owner/toy@v1")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()
    with pytest.raises(ValueError, match="no model given"):
        gym.make("wmsim/Dream")


def test_pretrained_name_uses_its_pinned_revision_and_registers_an_id(
    two_revisions: tuple[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    old, _ = two_revisions
    entry = registry.PretrainedModel("Toy", "owner/toy", "v1", "CartPole-v1", "a test model")
    monkeypatch.setitem(registry.PRETRAINED, "Toy", entry)
    registry.register_known_models()
    with caplog.at_level(logging.DEBUG, logger="wmsim.registry"):
        assert registry.resolve_model_dir("Toy").name == old
    assert (
        "pretrained model owner/toy@v1" in caplog.text
        and "found owner/toy@v1 in the Hub cache" in caplog.text
    )
    vec = gym.make_vec("wmsim/Toy-dream", num_envs=3)
    assert vec.reset(seed=0)[0].shape[0] == 3
    vec.close()


def test_shipped_copy_is_the_last_resort(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shipped = tmp_path / "shipped"
    make_bundle(shipped / "Toy")
    monkeypatch.setattr(registry, "SHIPPED_DIR", shipped)
    entry = registry.PretrainedModel("Toy", "owner/not-cached", "v1", "CartPole-v1", "a test model")
    monkeypatch.setitem(registry.PRETRAINED, "Toy", entry)
    with caplog.at_level(logging.DEBUG, logger="wmsim.registry"):
        assert registry.resolve_model_dir("Toy") == shipped / "Toy"
    steps = [
        "is not in the Hub cache",
        "the Hub is offline",
        "using the copy shipped with wmsim",
    ]
    positions = [caplog.text.index(step) for step in steps]
    assert positions == sorted(positions), caplog.text
    # an explicit local path comes first of all
    local = make_bundle(tmp_path / "local")
    assert registry.resolve_model_dir(local) == local


def test_offline_and_not_cached_says_what_to_do(cache: Path) -> None:
    with pytest.raises(
        hub.NotCachedError, match=r"owner/absent@main\) is not in the Hub cache .*unset HF_HUB_OFFLINE"
    ):
        registry.resolve_model_dir("owner/absent")
    # the hint to pull keeps the revision asked for
    for model, revision in (("owner/absent@v2", None), ("owner/absent", "v2")):
        with pytest.raises(hub.NotCachedError, match=r"run `wmsim pull owner/absent@v2`"):
            registry.resolve_model_dir(model, revision=revision)
    with pytest.raises(hub.NotCachedError, match=r"`wmsim pull owner/absent@v2` caches it"):
        hub.download_bundle("owner/absent", "v2", local_files_only=True)
    with pytest.raises(registry.UnknownModelError, match=r"unknown model .NoSuchName.*wmsim models"):
        registry.resolve_model_dir("NoSuchName")


@pytest.mark.parametrize("bad", ["weights.pkl", "pytorch_model.bin", "model.pt"])
def test_pickle_files_in_a_repo_are_refused_never_loaded(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    source = make_bundle(tmp_path / "evil")
    (source / bad).write_bytes(pickle.dumps({"a": 1}))
    add_snapshot(cache, "evil/repo", source)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickled a downloaded file")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(hub.UnsafeRepoError, match=f"could run code when loaded \\({bad}\\)"):
        registry.resolve_model("evil/repo")


def test_resolution_writes_nothing_outside_the_cache(
    two_revisions: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    def listing() -> set[str]:
        return {str(p) for p in tmp_path.rglob("*") if cache not in p.parents}

    before = listing()
    registry.resolve_model("owner/toy@v1")
    assert listing() == before


def test_models_command_lists_cached_bundles(
    two_revisions: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from agents.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    old, new = two_revisions
    assert "owner/toy" in out and old[:12] in out and new[:12] in out and "refs: v1" in out


def test_card_is_valid_hub_metadata_and_its_snippet_runs(tmp_path: Path, cache: Path) -> None:
    from huggingface_hub import ModelCard

    from wmsim.card import record_transfer, write_card

    source = make_bundle(tmp_path / "b")
    record_transfer(source, "ppo_dream", "SB3 PPO trained in the dream", [10.0, 20.0], "wmsim eval ...")
    record_transfer(source, "random", "random policy", [1.0, 3.0], "wmsim eval ... --random")
    write_card(source, repo_id="owner/carded")
    card = ModelCard.load(source / "README.md")
    assert card.data.library_name == "wmsim" and card.data.license == "mit"
    assert card.data.pipeline_tag == "reinforcement-learning"
    assert {"world-model", "reinforcement-learning", "gymnasium", "CartPole-v1"} <= set(card.data.tags)
    (result,) = card.data.eval_results  # the model's own result; the random baseline is only in the text
    assert result.metric_type == "mean_reward" and result.metric_value == "15.00 +/- 5.00"
    assert result.dataset_name == "CartPole-v1"
    assert "| random policy | 2.00 +/- 1.00 |" in str(card) and "Baselines for comparison" in str(card)
    assert "http" not in card.text, "no links to pages that may not exist"
    # the Hub's own parser accepts the metadata: model-index round-trips through huggingface_hub
    reparsed = ModelCard(str(card))
    assert reparsed.data.to_dict()["model-index"] == card.data.to_dict()["model-index"]
    add_snapshot(cache, "owner/carded", source)
    snippet = str(card).split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)
    assert namespace["vec"].num_envs == 256  # type: ignore[attr-defined]
