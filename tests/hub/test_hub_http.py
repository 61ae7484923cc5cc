"""End to end over HTTP against a Hub-compatible server on loopback (``hubserver.py``), with the real
``huggingface_hub`` client: push with ``wmsim push``, pull by repo id, pinned revision and pretrained
name, an interrupted download, refused repos and folders, and the errors users see."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hubserver import HubServer, isolate_hf_client

import hub
from agents.cli import main
from wmsim import registry
from wmsim.bundle import encode_start_states, load_bundle, save_bundle
from wmsim.config import model_preset
from wmsim.envs import describe_spaces, env_spec_of, make_env
from wmsim.world_model import IOSpec, WorldModel

REPO = "someone/cartpole-wm"


def make_bundle(directory: Path, seed: int = 0, deter: int = 32) -> Path:
    env = make_env("CartPole-v1")
    io = IOSpec.from_spaces(env.observation_space, env.action_space)
    torch.manual_seed(seed)
    config = model_preset("tiny")
    config = dataclasses.replace(config, rssm=dataclasses.replace(config.rssm, deter=deter, hidden=deter))
    model = WorldModel(config, io)
    first = np.stack([env.reset(seed=i)[0] for i in range(4)])
    starts = encode_start_states(model, torch.as_tensor(first))
    return save_bundle(directory, model, env_spec_of(env), describe_spaces(env), starts, {"seed": seed})


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer(tmp_path / "hub-root") as hub_server:
        isolate_hf_client(monkeypatch, hub_server.url, tmp_path / "hf-home")
        yield hub_server
        assert hub_server.errors == [], hub_server.errors[0]


def _same_weights(a: Path, b: Path) -> bool:
    left, right = load_bundle(a).model.state_dict(), load_bundle(b).model.state_dict()
    return all(torch.equal(left[name], right[name]) for name in left)


def test_push_then_pull_by_repo_id_tag_and_name(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_bundle(tmp_path / "v1", seed=1)
    assert main(["push", str(first), REPO, "--tag", "v1", "--message", "first model"]) == 0
    second = make_bundle(tmp_path / "v2", seed=2)
    assert main(["push", str(second), REPO]) == 0

    (commit, *_), later = server.received_commits[:1], server.received_commits[1]
    assert commit.summary == "first model"
    sent = {path: (first / path).read_bytes() for path in commit.added}
    assert set(sent) == {"config.json", "model.safetensors", "start_states.safetensors", "README.md"}
    assert all(commit.added[path] == data for path, data in sent.items()), "files reach the Hub unchanged"
    assert "someone/cartpole-wm" in (first / "README.md").read_text(), "push refreshes the card's snippet"
    assert later.summary.startswith("Upload wmsim bundle")

    latest = registry.resolve_model_dir(REPO)
    pinned = registry.resolve_model_dir(f"{REPO}@v1")
    assert _same_weights(latest, second) and _same_weights(pinned, first)
    assert main(["pull", f"{REPO}@v1"]) == 0
    assert str(pinned) in capsys.readouterr().out

    entry = registry.PretrainedModel("Toy", REPO, "v1", "CartPole-v1", "test")
    monkeypatch.setitem(registry.PRETRAINED, "Toy", entry)
    assert registry.resolve_model_dir("Toy") == pinned


def test_interrupted_download_resumes_with_a_range_request(server: HubServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "big", deter=1024)  # model.safetensors > 12 MiB
    size = (bundle / "model.safetensors").stat().st_size
    assert size > 12 * 2**20
    server.add_commit(REPO, {p.name: p.read_bytes() for p in bundle.iterdir()}, "big model")
    cut = 11 * 2**20
    server.fail_once_after_bytes["model.safetensors"] = cut
    path = hub.download_bundle(REPO)  # the connection drops half-way; the client resumes at 10 MiB
    gets = [r for r in server.requests if r.method == "GET" and r.path.endswith("/model.safetensors")]
    assert len(gets) == 2 and gets[0].range is None and gets[1].range == f"bytes={10 * 2**20}-"
    assert _same_weights(path, bundle)  # and the SHA-256 recorded in config.json matched


def test_a_download_that_fails_is_a_clear_error_and_the_next_call_completes(
    server: HubServer, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b")
    server.add_commit(REPO, {p.name: p.read_bytes() for p in bundle.iterdir()}, "model")
    server.fail_once_with_status["model.safetensors"] = 500
    with pytest.raises(hub.HubError, match=f"{REPO}@main"):
        hub.download_bundle(REPO)
    assert _same_weights(hub.download_bundle(REPO), bundle)


def test_unknown_repo_and_revision_say_what_to_do(server: HubServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    server.add_commit(REPO, {p.name: p.read_bytes() for p in bundle.iterdir()}, "model")
    with pytest.raises(hub.HubError, match=r"no model repo 'someone/absent' on http://127\.0\.0\.1"):
        registry.resolve_model_dir("someone/absent")
    with pytest.raises(hub.HubError, match=r"has no revision 'v9': pass a branch, tag or commit"):
        registry.resolve_model_dir(f"{REPO}@v9")
    assert main(["pull", "someone/absent"]) == 2
    assert main(["push", str(bundle), "someone/secret", "--private"]) == 0
    with pytest.raises(hub.HubError, match=r"if it is private, log in"):
        registry.resolve_model_dir("someone/secret")  # no token sent


def test_a_repo_with_pickle_files_is_refused_before_any_download(server: HubServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    files = {p.name: p.read_bytes() for p in bundle.iterdir()}
    files["pytorch_model.bin"] = pickle.dumps({"weights": [1, 2, 3]})
    server.add_commit("evil/model", files, "sneaky")
    server.clear_requests()
    with pytest.raises(hub.UnsafeRepoError, match=r"pytorch_model\.bin"):
        registry.resolve_model("evil/model")
    assert not [r for r in server.requests if "/resolve/" in r.path], "nothing was downloaded"


def test_push_refuses_folders_with_stray_files_and_sends_nothing(server: HubServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "checkpoint.pt").write_bytes(b"not for publishing")
    assert main(["push", str(bundle), REPO]) == 2
    (bundle / "checkpoint.pt").unlink()
    (bundle / "notes.py").write_text("print('hi')")
    with pytest.raises(hub.HubError, match=r"holds file\(s\) a bundle does not: \['notes\.py'\]"):
        hub.upload_bundle(bundle, REPO)
    assert server.received_commits == [] and not server.has_repo(REPO)
    assert main(["push", str(tmp_path), REPO]) == 2  # not a bundle


def test_an_unreachable_hub_falls_back_to_the_shipped_copy_or_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_hf_client(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf-home")  # nothing listens there
    assert registry.resolve_model_dir("CartPole") == registry.PRETRAINED["CartPole"].shipped_dir
    with pytest.raises(
        hub.HubError, match=r"cannot reach the Hub at http://127\.0\.0\.1:9 .*HF_HUB_OFFLINE=1"
    ):
        registry.resolve_model_dir(REPO)
    with pytest.raises(hub.HubError, match="check the network"):
        hub.upload_bundle(make_bundle(tmp_path / "b"), REPO)
