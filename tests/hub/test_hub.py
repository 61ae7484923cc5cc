"""wmsim's own Hub logic against a fake of ``huggingface_hub`` at its API boundary (fakehub.py): how client
errors map to wmsim's, what is refused before anything is fetched or sent, exactly what a push sends,
the order in which a model argument resolves, and ``from_pretrained`` / ``save_pretrained`` /
``push_to_hub`` on a bundle."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
import torch
from fakehub import FakeHub, hf_error
from hubcache import make_bundle
from huggingface_hub import constants, errors

import hub
from agents.cli import main
from wmsim import registry
from wmsim.bundle import Bundle, load_bundle
from wmsim.card import record_transfer

REPO = "owner/toy"
BUNDLE_FILES = {"config.json", "model.safetensors", "start_states.safetensors", "README.md"}


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """The fake client, online, with an empty cache."""
    client = FakeHub(tmp_path / "hf-cache")
    client.install(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return client


def _weights(path: Path | Bundle) -> torch.Tensor:
    bundle = path if isinstance(path, Bundle) else load_bundle(path)
    return bundle.model.state_dict()["rssm.gru.linear.weight"]


# ---------------------------------------------------------------------------------------------- errors
ERRORS = [
    (hf_error(errors.GatedRepoError, "403 gated", 403), hub.HubError, "is gated: accept its conditions"),
    (hf_error(errors.RepositoryNotFoundError, "404"), hub.HubError, r"no model repo 'owner/toy' on .*log in"),
    (
        hf_error(errors.RevisionNotFoundError, "404"),
        hub.HubError,
        r"has no revision 'v9': pass a branch, tag",
    ),
    (
        hf_error(errors.HfHubHTTPError, "500 oops", 500),
        hub.HubError,
        r"the Hub at .* refused owner/toy@v9: 500",
    ),
    (errors.HTTPError("connection refused"), hub.HubError, r"cannot reach the Hub at .*HF_HUB_OFFLINE=1"),
    (errors.LocalEntryNotFoundError("no connection"), hub.HubError, r"cannot reach the Hub .* not cached"),
    (OSError("No space left on device"), hub.HubError, r"downloading owner/toy@v9 failed: No space left"),
]


@pytest.mark.parametrize(("raised", "expected", "message"), ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
def test_client_errors_become_errors_that_say_what_to_do(
    fake: FakeHub, raised: Exception, expected: type[Exception], message: str
) -> None:
    fake.add(REPO, {"config.json": b"{}"}, refs=("main", "v9"))
    fake.fail["model_info" if isinstance(raised, errors.HfHubHTTPError) else "snapshot_download"] = raised
    with pytest.raises(expected, match=message) as error:
        hub.download_bundle(REPO, "v9")
    assert error.value.__cause__ is raised


def test_offline_and_not_cached_is_a_not_cached_error(fake: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        hub.NotCachedError, match=r"owner/toy@main is not in the Hub cache .*HF_HUB_OFFLINE is set"
    ):
        hub.download_bundle(REPO)
    assert fake.names() == ["snapshot_download"] and fake.calls[0].kwargs["local_files_only"]


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("bad", ["pytorch_model.bin", "weights.pkl", "model.pt", "sub/ckpt.ckpt"])
def test_a_repo_with_pickle_files_is_refused_before_any_download(
    fake: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    fake.add_folder(REPO, make_bundle(tmp_path / "b"))
    fake.commits[fake.repos[REPO]["main"]][bad] = pickle.dumps({"a": 1})

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickled a downloaded file")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(hub.UnsafeRepoError, match=f"could run code when loaded \\({bad}\\)"):
        Bundle.from_pretrained(REPO)
    assert "snapshot_download" not in fake.names()[1:], "nothing fetched after the listing"
    assert [c.kwargs["local_files_only"] for c in fake.calls if c.name == "snapshot_download"] == [True]


def test_only_bundle_files_are_downloaded_and_a_cached_pickle_is_refused(
    fake: FakeHub, tmp_path: Path
) -> None:
    fake.add_folder(REPO, make_bundle(tmp_path / "b"))
    fake.commits[fake.repos[REPO]["main"]]["notes.py"] = b"print('hi')"
    path = hub.download_bundle(REPO)
    download = [c for c in fake.calls if c.name == "snapshot_download"][-1]
    assert (
        download.kwargs["allow_patterns"] == hub.ALLOWED_PATTERNS
        and download.kwargs["library_name"] == "wmsim"
    )
    assert not (path / "notes.py").exists() and (path / "model.safetensors").is_file()
    (path / "weights.pkl").write_bytes(pickle.dumps(1))  # a snapshot tampered with in the cache
    with pytest.raises(hub.UnsafeRepoError, match=r"the cached snapshot .* \(weights\.pkl\)"):
        hub.download_bundle(REPO, local_files_only=True)


# ---------------------------------------------------------------------------------------------- pushing
def test_a_push_sends_exactly_the_bundle_in_one_tagged_commit(fake: FakeHub, tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "b")
    result = hub.upload_bundle(folder, REPO, private=True, commit_message="first", tag="v1", token="hf_x")
    create, commit, tag = fake.calls
    assert (create.name, create.kwargs["private"], create.kwargs["exist_ok"]) == ("create_repo", True, True)
    sent = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in commit.kwargs["operations"]}
    assert set(sent) == BUNDLE_FILES and all(sent[n] == (folder / n).read_bytes() for n in sent)
    assert commit.kwargs["commit_message"] == "first" and commit.kwargs["token"] == "hf_x"
    assert (tag.name, tag.kwargs["tag"], tag.kwargs["revision"]) == ("create_tag", "v1", result.commit_oid)
    assert result.files == tuple(sorted(BUNDLE_FILES)) and fake.repos[REPO]["v1"] == result.commit_oid
    assert REPO in fake.private


@pytest.mark.parametrize(
    ("stray", "message"),
    [
        ("checkpoint.pt", r"pickle-based file\(s\) \['checkpoint\.pt'\]"),
        ("notes.py", r"a bundle does not: \['notes\.py'\]"),
    ],
)
def test_a_folder_with_stray_files_is_refused_before_any_call(
    fake: FakeHub, tmp_path: Path, stray: str, message: str
) -> None:
    folder = make_bundle(tmp_path / "b")
    (folder / stray).write_bytes(b"not for publishing")
    with pytest.raises(hub.HubError, match=message):
        hub.upload_bundle(folder, REPO)
    with pytest.raises(hub.HubError, match=r"holds no config\.json: pass a bundle folder"):
        hub.upload_bundle(tmp_path, REPO)
    assert fake.calls == [] and REPO not in fake.repos


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (
            hf_error(errors.HfHubHTTPError, "403 Forbidden", 403),
            r"failed: 403 Forbidden; check that you are logged in",
        ),
        (errors.HTTPError("connection reset"), r"failed: connection reset: check the network"),
    ],
)
def test_push_errors_say_what_to_do(fake: FakeHub, tmp_path: Path, raised: Exception, message: str) -> None:
    fake.fail["create_commit"] = raised
    with pytest.raises(hub.HubError, match=message):
        hub.upload_bundle(make_bundle(tmp_path / "b"), REPO)


def test_push_and_pull_commands(fake: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_bundle(tmp_path / "b")
    assert main(["push", str(folder), REPO, "--tag", "v1", "--message", "from the CLI"]) == 0
    assert f"{REPO}@v1" in capsys.readouterr().out
    commit = fake.repos[REPO]["v1"]
    assert fake.messages[commit] == "from the CLI" and REPO in (folder / "README.md").read_text()
    assert main(["pull", f"{REPO}@v1"]) == 0
    assert commit in capsys.readouterr().out
    assert main(["pull", "owner/absent"]) == 2


# ---------------------------------------------------------------------------------------------- resolution
def test_resolution_order_local_registered_cache_hub_shipped(
    fake: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shipped = tmp_path / "shipped"
    make_bundle(shipped / "Toy", seed=3)
    monkeypatch.setattr(registry, "SHIPPED_DIR", shipped)
    monkeypatch.setitem(
        registry.PRETRAINED, "Toy", registry.PretrainedModel("Toy", REPO, "v1", "CartPole-v1", "t")
    )
    # 1. the Hub does not have it: the shipped copy, after asking the cache, then the Hub
    assert registry.resolve_model_dir("Toy") == shipped / "Toy"
    assert [(c.name, c.kwargs.get("local_files_only")) for c in fake.calls] == [
        ("snapshot_download", True),
        ("model_info", None),
    ]
    # 2. the Hub has the pinned revision: downloaded, and from then on found in the cache
    fake.add_folder(REPO, make_bundle(tmp_path / "v1", seed=1), refs=("v1",))
    fake.calls.clear()
    first = registry.resolve_model_dir("Toy")
    assert fake.names() == ["snapshot_download", "model_info", "snapshot_download"]
    fake.calls.clear()
    with caplog.at_level(logging.DEBUG, logger="wmsim.registry"):
        assert registry.resolve_model_dir("Toy") == first
    assert fake.names() == ["snapshot_download"] and "found owner/toy@v1 in the Hub cache" in caplog.text
    # 3. offline: cache or shipped copy, never the Hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake.calls.clear()
    assert registry.resolve_model_dir("Toy") == first
    assert registry.resolve_model_dir("Toy@v2") == shipped / "Toy"
    assert "model_info" not in fake.names()
    # 4. an explicit local path and a registered directory come before all of it
    local = make_bundle(tmp_path / "local")
    fake.calls.clear()
    assert registry.resolve_model_dir(local) == local
    monkeypatch.setitem(registry.KNOWN_MODELS, "LocalToy", str(local))
    assert registry.resolve_model_dir("LocalToy") == local and fake.calls == []


def test_revisions_take_precedence_explicit_then_at_then_pinned(fake: FakeHub, tmp_path: Path) -> None:
    fake.add_folder(REPO, make_bundle(tmp_path / "a", seed=1), refs=("v1",))
    fake.add_folder(REPO, make_bundle(tmp_path / "b", seed=2), refs=("main", "v2"))
    assert torch.equal(_weights(registry.resolve_model_dir(REPO)), _weights(tmp_path / "b"))
    assert torch.equal(_weights(registry.resolve_model_dir(f"{REPO}@v1")), _weights(tmp_path / "a"))
    assert torch.equal(_weights(registry.resolve_model_dir(f"{REPO}@v1", "v2")), _weights(tmp_path / "b"))
    with pytest.raises(registry.UnknownModelError, match=r"unknown model 'no-slash'.*wmsim models"):
        registry.resolve_model_dir("no-slash")


# ------------------------------------------------------------------------------------------ from/save/push
def test_from_pretrained_takes_a_repo_revision_or_a_directory(fake: FakeHub, tmp_path: Path) -> None:
    fake.add_folder(REPO, make_bundle(tmp_path / "a", seed=1), refs=("v1",))
    fake.add_folder(REPO, make_bundle(tmp_path / "b", seed=2), refs=("main",))
    assert torch.equal(_weights(Bundle.from_pretrained(REPO, revision="v1")), _weights(tmp_path / "a"))
    assert torch.equal(_weights(Bundle.from_pretrained(tmp_path / "b")), _weights(tmp_path / "b"))
    fake.calls.clear()
    with pytest.raises(
        hub.NotCachedError, match=r"owner/toy@main\) is not in the Hub cache .*local_files_only"
    ):
        Bundle.from_pretrained(REPO, local_files_only=True)  # v1 is cached, main is not
    assert "model_info" not in fake.names()
    fake.calls.clear()
    Bundle.from_pretrained(REPO, revision="v1", force_download=True, token="hf_x", cache_dir=tmp_path / "c2")
    download = fake.calls[-1]
    assert fake.names() == ["model_info", "snapshot_download"]  # no cache lookup first
    assert download.kwargs["force_download"] and download.kwargs["token"] == "hf_x"
    assert Path(download.kwargs["cache_dir"]) == tmp_path / "c2"


def test_save_pretrained_round_trips_and_push_to_hub_sends_it(fake: FakeHub, tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "src", seed=5)
    record_transfer(source, "ppo_dream", "PPO in the dream", [10.0, 20.0])
    record_transfer(source, "random", "random policy", [1.0, 2.0])
    bundle = Bundle.from_pretrained(source)
    saved = bundle.save_pretrained(tmp_path / "copy", repo_id=REPO)
    again = Bundle.from_pretrained(saved)
    assert torch.equal(_weights(again), _weights(bundle)) and again.env_spec == bundle.env_spec
    assert json.loads((saved / "transfer.json").read_text()) == json.loads(
        (source / "transfer.json").read_text()
    )
    card = (saved / "README.md").read_text()
    assert f'model="{REPO}"' in card and "PPO in the dream" in card
    url = bundle.push_to_hub(REPO, commit_message="via push_to_hub", private=True, tag="v1")
    commit = fake.repos[REPO]["v1"]
    assert url.endswith(commit) and fake.messages[commit] == "via push_to_hub"
    assert set(fake.commits[commit]) == BUNDLE_FILES | {"transfer.json"}
    assert torch.equal(_weights(Bundle.from_pretrained(f"{REPO}@v1")), _weights(bundle))
    pr = bundle.push_to_hub(REPO, create_pr=True)
    assert pr.endswith("/discussions/1") and fake.repos[REPO]["main"] == commit  # main untouched
    with pytest.raises(ValueError, match="push_to_hub=True\\) needs repo_id"):
        bundle.save_pretrained(tmp_path / "x", push_to_hub=True)
