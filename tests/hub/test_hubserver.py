"""The loopback Hub (hubserver.py) against the real huggingface_hub client: downloads by branch, tag and
sha, snapshots, repo info, the errors the client maps to its exception types, resumed downloads, and the
create_repo / commit / tag upload path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import pytest
from hubserver import HubServer, git_blob_oid, isolate_hf_client, iter_file_requests
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

REPO = "acme/tiny-model"
WEIGHTS_V1 = bytes(range(256)) * 64  # 16 KiB
WEIGHTS_V2 = bytes(reversed(range(256))) * 64
# The client writes what it receives in DOWNLOAD_CHUNK_SIZE (10 MiB) pieces and resumes from what it wrote:
# a cut inside the first 10 MiB is retried from byte 0 without a Range, so the resume tests use 12 MiB.
BIG = bytes(range(256)) * (12 * 4096)
CUT = 11 * 1024 * 1024
WRITTEN = constants.DOWNLOAD_CHUNK_SIZE
CARD = b"---\nlicense: mit\n---\n# tiny model\n"
REAL_HF_HOME = Path(os.path.expanduser("~")) / ".cache" / "huggingface"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    real_home_existed = REAL_HF_HOME.exists()
    with HubServer(tmp_path / "hub-root") as server:
        isolate_hf_client(monkeypatch, server.url, tmp_path / "hf-home")
        yield server
        assert server.errors == [], server.errors[0]
    assert REAL_HF_HOME.exists() == real_home_existed, "the client wrote to the real home cache"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def two_versions(hub: HubServer) -> tuple[str, str]:
    """main has two commits; the first is tagged v1.0."""
    first = hub.add_commit(
        REPO, {"config.json": b'{"v": 1}', "model.safetensors": WEIGHTS_V1}, "first version"
    )
    hub.create_tag(REPO, "v1.0", first)
    second = hub.add_commit(REPO, {"config.json": b'{"v": 2}', "model.safetensors": WEIGHTS_V2}, "second")
    return first, second


def test_client_points_at_the_server_and_writes_only_under_tmp(hub: HubServer, tmp_path: Path) -> None:
    assert hub.url == constants.ENDPOINT
    for path in (constants.HF_HOME, constants.HF_HUB_CACHE, constants.HF_XET_CACHE, constants.HF_TOKEN_PATH):
        assert Path(path).is_relative_to(tmp_path)
    hub.add_commit(REPO, {"a.txt": b"a"}, "one")
    # the module-level functions use an HfApi built at import time: isolate_hf_client re-points it too
    assert huggingface_hub.model_info(REPO).sha == hub.resolve(REPO)
    path = hf_hub_download(REPO, "a.txt")  # no endpoint, no cache_dir: the patched constants
    assert Path(path).is_relative_to(tmp_path / "hf-home" / "hub")
    assert [r.method for r in hub.requests] == ["GET", "HEAD", "GET"]
    assert all("authorization" not in r.headers for r in hub.requests)


def test_download_by_branch_tag_and_sha(hub: HubServer, two_versions: tuple[str, str], cache: Path) -> None:
    first, second = two_versions
    cases = [("main", second, WEIGHTS_V2), ("v1.0", first, WEIGHTS_V1), (first, first, WEIGHTS_V1)]
    for revision, sha, weights in cases:
        path = Path(
            hf_hub_download(REPO, "model.safetensors", revision=revision, cache_dir=cache, endpoint=hub.url)
        )
        assert path.read_bytes() == weights
        assert path.parent.name == sha  # snapshots/<commit sha>/model.safetensors
    config = hf_hub_download(REPO, "config.json", revision="v1.0", cache_dir=cache, endpoint=hub.url)
    assert Path(config).read_bytes() == b'{"v": 1}'

    storage = cache / "models--acme--tiny-model"
    assert (storage / "refs" / "main").read_text() == second
    assert (storage / "refs" / "v1.0").read_text() == first
    # blob names are the ETags: sha256 (X-Linked-Etag) for LFS-like files, the git blob sha1 otherwise
    blobs = {p.name for p in (storage / "blobs").iterdir()}
    assert blobs == {
        hub.commits(REPO)[0].files["model.safetensors"],
        hub.commits(REPO)[1].files["model.safetensors"],
        git_blob_oid(b'{"v": 1}'),
    }
    head = next(
        r for r in hub.requests if r.method == "HEAD" and r.path.endswith("/resolve/v1.0/config.json")
    )
    assert head.status == 200


def test_revision_with_slash_is_url_encoded(hub: HubServer, cache: Path) -> None:
    sha = hub.add_commit(REPO, {"a.txt": b"a"}, "one")
    hub.create_branch(REPO, "release/1", sha)
    hub.add_commit(REPO, {"a.txt": b"b"}, "two", branch="release/1")
    path = hf_hub_download(REPO, "a.txt", revision="release/1", cache_dir=cache)
    assert Path(path).read_bytes() == b"b"
    assert any(r.path.endswith("/resolve/release/1/a.txt") for r in hub.requests)


def test_snapshot_download_with_allow_patterns(hub: HubServer, cache: Path) -> None:
    files = {
        "config.json": b"{}",
        "weights/model.safetensors": WEIGHTS_V1,
        "weights/extra/notes.md": b"notes",
        "logs/train.txt": b"loss",
    }
    sha = hub.add_commit(REPO, files, "upload")
    folder = Path(
        snapshot_download(REPO, allow_patterns=["*.json", "weights/*"], cache_dir=cache, endpoint=hub.url)
    )
    assert folder == cache / "models--acme--tiny-model" / "snapshots" / sha
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    # fnmatch's "*" crosses "/", so weights/* also takes weights/extra/notes.md (as on the real Hub)
    assert got == {k: v for k, v in files.items() if not k.startswith("logs/")}
    assert not (cache / "models--acme--tiny-model" / "snapshots" / sha / "logs").exists()
    api_calls = [(r.method, r.path, r.query) for r in hub.requests if r.path.startswith("/api/")]
    assert api_calls == [
        ("GET", f"/api/models/{REPO}/revision/main", ""),
        ("GET", f"/api/models/{REPO}/tree/{sha}", "recursive=true&expand=false"),
    ]
    assert not any(r.path.endswith("/logs/train.txt") for r in hub.requests)


def test_model_info_siblings_and_tree(hub: HubServer) -> None:
    files = {"config.json": b"{}", "model.safetensors": WEIGHTS_V1, "sub/dir/a.txt": b"a"}
    sha = hub.add_commit(REPO, files, "upload")
    api = HfApi(endpoint=hub.url, token=False)

    info = api.model_info(REPO)
    assert info.sha == sha
    assert info.private is False
    assert info.siblings is not None
    assert sorted(s.rfilename for s in info.siblings) == sorted(files)

    detailed = api.model_info(REPO, revision=sha, files_metadata=True)
    by_name = {s.rfilename: s for s in detailed.siblings or []}
    assert by_name["config.json"].size == 2
    assert by_name["config.json"].blob_id == git_blob_oid(b"{}")
    assert by_name["config.json"].lfs is None
    lfs = by_name["model.safetensors"].lfs
    assert lfs is not None and lfs.size == len(WEIGHTS_V1)
    assert lfs.sha256 == hub.commits(REPO)[-1].files["model.safetensors"]

    top = list(api.list_repo_tree(REPO))
    assert [(type(e).__name__, e.path) for e in top] == [
        ("RepoFile", "config.json"),
        ("RepoFile", "model.safetensors"),
        ("RepoFolder", "sub"),
    ]
    deep = list(api.list_repo_tree(REPO, recursive=True))
    assert sorted(e.path for e in deep if isinstance(e, RepoFile)) == sorted(files)
    assert sorted(e.path for e in deep if isinstance(e, RepoFolder)) == ["sub", "sub/dir"]
    assert [e.path for e in api.list_repo_tree(REPO, "sub/dir", revision=sha)] == ["sub/dir/a.txt"]
    assert sorted(api.list_repo_files(REPO)) == sorted(files)
    expanded = list(api.list_repo_tree(REPO, "sub", recursive=True, expand=True))
    last = next(e for e in expanded if isinstance(e, RepoFile)).last_commit
    assert last is not None and last.oid == sha and last.title == "upload"
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, "nowhere"))


def test_unknown_repo_raises_repository_not_found(hub: HubServer, cache: Path) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/absent", "config.json", cache_dir=cache, endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/absent")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("acme/absent", cache_dir=cache, endpoint=hub.url)
    assert not api.repo_exists("acme/absent")
    missing = [r for r in hub.requests if r.status == 404]
    assert len(missing) == len(hub.requests) and all("acme/absent" in r.path for r in missing)


def test_unknown_revision_and_file(hub: HubServer, two_versions: tuple[str, str], cache: Path) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    for revision in ("no-such-branch", "0" * 40):
        with pytest.raises(RevisionNotFoundError):
            hf_hub_download(REPO, "config.json", revision=revision, cache_dir=cache, endpoint=hub.url)
        with pytest.raises(RevisionNotFoundError):
            api.model_info(REPO, revision=revision)
        with pytest.raises(RevisionNotFoundError):
            snapshot_download(REPO, revision=revision, cache_dir=cache, endpoint=hub.url)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "absent.bin", cache_dir=cache, endpoint=hub.url)
    # the client remembered the miss under the commit given in X-Repo-Commit
    assert (cache / "models--acme--tiny-model" / ".no_exist" / two_versions[1] / "absent.bin").exists()
    assert api.revision_exists(REPO, "v1.0") and not api.revision_exists(REPO, "v9")
    assert api.file_exists(REPO, "config.json") and not api.file_exists(REPO, "absent.bin")


def test_interrupted_download_resumes_with_a_range_request(hub: HubServer, cache: Path) -> None:
    hub.add_commit(REPO, {"model.safetensors": BIG}, "upload")
    hub.fail_once_after_bytes["model.safetensors"] = CUT
    path = hf_hub_download(REPO, "model.safetensors", cache_dir=cache, endpoint=hub.url)
    assert Path(path).read_bytes() == BIG
    gets = [r for r in iter_file_requests(hub.requests, "model.safetensors") if r.method == "GET"]
    assert [(r.range, r.status, r.fault) for r in gets] == [
        (None, 200, f"closed after {CUT} of {len(BIG)} bytes"),
        (f"bytes={WRITTEN}-", 206, None),
    ]


def test_small_file_cut_is_retried_from_the_start(hub: HubServer, cache: Path) -> None:
    hub.add_commit(REPO, {"model.safetensors": WEIGHTS_V1}, "upload")
    hub.fail_once_after_bytes["model.safetensors"] = 5000
    path = hf_hub_download(REPO, "model.safetensors", cache_dir=cache, endpoint=hub.url)
    assert Path(path).read_bytes() == WEIGHTS_V1
    gets = [r for r in iter_file_requests(hub.requests, "model.safetensors") if r.method == "GET"]
    assert [(r.range, r.status) for r in gets] == [(None, 200), (None, 200)]


def test_download_failing_twice_raises_then_the_next_call_completes(hub: HubServer, cache: Path) -> None:
    hub.add_commit(REPO, {"model.safetensors": BIG}, "upload")
    hub.fail_once_after_bytes["model.safetensors"] = CUT  # cut; the client retries with a Range ...
    hub.fail_once_with_status["model.safetensors"] = 500  # ... which fails too: the call gives up
    with pytest.raises(HfHubHTTPError) as failure:
        hf_hub_download(REPO, "model.safetensors", cache_dir=cache, endpoint=hub.url)
    assert failure.value.response.status_code == 500
    blobs = cache / "models--acme--tiny-model" / "blobs"
    assert not [p for p in blobs.iterdir() if not p.name.endswith(".lock")]  # no partial file kept

    path = hf_hub_download(REPO, "model.safetensors", cache_dir=cache, endpoint=hub.url)
    assert Path(path).read_bytes() == BIG
    gets = [r for r in iter_file_requests(hub.requests, "model.safetensors") if r.method == "GET"]
    assert [(r.range, r.status) for r in gets] == [
        (None, 200),  # cut after CUT bytes
        (f"bytes={WRITTEN}-", 500),  # the resume attempt, refused: the first call raises
        (None, 200),  # second call: huggingface_hub 2.4 dropped the partial file, so it starts over
    ]


def test_create_repo_upload_folder_commit_and_tag_round_trip(
    hub: HubServer, tmp_path: Path, cache: Path
) -> None:
    api = HfApi(endpoint=hub.url, token="hf_test_token")
    url = api.create_repo("acme/new-model", private=True)
    assert url.repo_id == "acme/new-model"
    assert api.create_repo("acme/new-model", exist_ok=True).repo_id == "acme/new-model"
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo("acme/new-model")
    assert conflict.value.response.status_code == 409
    # private: invisible without a token
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info("acme/new-model")

    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_bytes(b'{"hidden": 8}')
    (folder / "model.safetensors").write_bytes(WEIGHTS_V1)
    (folder / "README.md").write_bytes(CARD)
    (folder / "sub" / "notes.txt").write_bytes(b"notes")
    info = api.upload_folder(repo_id="acme/new-model", folder_path=folder, commit_message="Upload v1")
    received = hub.received_commits[-1]
    assert received.sha == info.oid == hub.resolve("acme/new-model")
    assert received.summary == "Upload v1"
    assert received.paths == ["README.md", "config.json", "model.safetensors", "sub/notes.txt"]
    assert received.added["model.safetensors"] == WEIGHTS_V1
    assert hub.files("acme/new-model") == {
        ".gitattributes": hub.read_file("acme/new-model", ".gitattributes"),
        "config.json": b'{"hidden": 8}',
        "model.safetensors": WEIGHTS_V1,
        "README.md": CARD,
        "sub/notes.txt": b"notes",
    }
    # no LFS batch, no xet: everything went inline through preupload + commit
    posts = [r.path for r in hub.requests if r.method == "POST"]
    assert posts == [
        "/api/repos/create",
        "/api/repos/create",
        "/api/repos/create",
        "/api/validate-yaml",  # README.md front matter: upload_folder checks it, then create_commit
        "/api/validate-yaml",
        "/api/models/acme/new-model/preupload/main",
        "/api/models/acme/new-model/commit/main",
    ]

    api.create_tag("acme/new-model", tag="v1", revision=info.oid, tag_message="first release")
    with pytest.raises(HfHubHTTPError):
        api.create_tag("acme/new-model", tag="v1")
    api.create_tag("acme/new-model", tag="v1", exist_ok=True)

    second = api.create_commit(
        "acme/new-model",
        operations=[
            CommitOperationAdd("model.safetensors", WEIGHTS_V2),
            CommitOperationAdd("config.json", b'{"hidden": 8}'),  # unchanged: skipped by the client
            CommitOperationDelete("sub/"),
        ],
        commit_message="v2",
        commit_description="new weights",
        parent_commit=info.oid,
    )
    received = hub.received_commits[-1]
    assert (received.summary, received.description) == ("v2", "new weights")
    assert received.paths == ["model.safetensors"] and received.deleted == ("sub/notes.txt",)
    assert [c.summary for c in hub.commits("acme/new-model")] == ["initial commit", "Upload v1", "v2"]
    assert [c.commit_id for c in api.list_repo_commits("acme/new-model")] == [
        c.sha for c in reversed(hub.commits("acme/new-model"))
    ]
    refs = api.list_repo_refs("acme/new-model")
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", info.oid)]
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", second.oid)]

    tagged = hf_hub_download(
        "acme/new-model", "model.safetensors", revision="v1", cache_dir=cache, token="hf_test_token"
    )
    assert Path(tagged).read_bytes() == WEIGHTS_V1
    latest = hf_hub_download("acme/new-model", "model.safetensors", cache_dir=cache, token="hf_test_token")
    assert Path(latest).read_bytes() == WEIGHTS_V2

    # a stale parent commit is refused, as on the Hub
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            "acme/new-model",
            operations=[CommitOperationAdd("x.txt", b"x")],
            commit_message="late",
            parent_commit=info.oid,
        )
    assert stale.value.response.status_code == 412


def test_server_token_guards_writes_and_state_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    with HubServer(root, token="secret") as server:
        isolate_hf_client(monkeypatch, server.url, tmp_path / "hf-home")
        with pytest.raises(HfHubHTTPError) as denied:
            HfApi(endpoint=server.url, token="wrong").create_repo("acme/guarded")
        assert denied.value.response.status_code == 401
        api = HfApi(endpoint=server.url, token="secret")
        api.create_repo("acme/guarded")
        api.upload_file(path_or_fileobj=b"data", path_in_repo="f.bin", repo_id="acme/guarded")
        sha = server.resolve("acme/guarded")
    with HubServer(root) as again:
        isolate_hf_client(monkeypatch, again.url, tmp_path / "hf-home")
        assert again.resolve("acme/guarded") == sha
        assert again.read_file("acme/guarded", "f.bin") == b"data"


def test_a_restart_on_the_same_port_serves_the_new_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    # the client pools keep-alive connections: stop() must end them, or the old hub's threads answer
    with HubServer(tmp_path / "old") as old:
        isolate_hf_client(monkeypatch, old.url, tmp_path / "hf-home")
        old.add_commit(REPO, {"a.txt": b"old"}, "old")
        assert Path(hf_hub_download(REPO, "a.txt", cache_dir=cache)).read_bytes() == b"old"
        url = old.url
    with HubServer(tmp_path / "new", port=int(url.rsplit(":", 1)[1])) as new:
        assert new.url == url
        new.add_commit(REPO, {"a.txt": b"new"}, "new")
        assert Path(hf_hub_download(REPO, "a.txt", cache_dir=cache)).read_bytes() == b"new"
        assert [r.method for r in new.requests] == ["HEAD", "GET"]
