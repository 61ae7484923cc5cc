"""A Hugging Face Hub look-alike on loopback, for tests: standard library only, no network needed.

``HubServer`` stores model repos under a directory and speaks enough of the Hub's HTTP API that the
real ``huggingface_hub`` client (checked against 2.4.0) downloads from it and uploads to it::

    with HubServer(tmp_path / "hub") as hub:
        sha = hub.add_commit("acme/tiny", {"config.json": b"{}", "model.safetensors": weights}, "v1")
        hub.create_tag("acme/tiny", "v1.0", sha)
        path = hf_hub_download("acme/tiny", "config.json", revision="v1.0",
                               endpoint=hub.url, cache_dir=tmp_path / "cache", token=False)

Storage: ``root/<namespace>/<name>/repo.json`` (branches, tags and a linear list of commits, each
commit a full snapshot ``path -> sha256``) and ``root/.blobs/<sha256>`` (file contents). A server
started on an existing root serves the repos stored there.

Pointing the client at the server
---------------------------------
``huggingface_hub`` reads ``HF_ENDPOINT`` (and ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_HUB_DISABLE_TELEMETRY``, ...) into ``huggingface_hub.constants`` once, at import time, so setting
the environment variable inside a test is too late for the running process. What works:

* per call: ``HfApi(endpoint=url)``, ``hf_hub_download(..., endpoint=url)`` and
  ``snapshot_download(..., endpoint=url)`` all honour ``endpoint=`` (hf_hub_download swaps the
  ``constants.ENDPOINT`` prefix of the resolve URL for it);
* for code that does not pass ``endpoint``: ``isolate_hf_client(monkeypatch, url, home)`` below
  patches ``constants.ENDPOINT`` *and* ``constants.HUGGINGFACE_CO_URL_TEMPLATE`` (hf_hub_url formats
  the template, it does not re-read ENDPOINT), plus ``huggingface_hub.hf_api.api.endpoint``: the
  module-level ``HfApi()`` behind the top-level functions (``huggingface_hub.model_info``,
  ``create_repo``, ...) captured the endpoint when it was built. It also moves every path the
  client may write (HF_HOME, hub/xet/assets caches, token path) under ``home``; disables telemetry
  (otherwise building the user agent fetches ``/api/agent-harnesses`` and caches it in HF_HOME),
  implicit tokens, offline mode, xet and progress bars; and sets the matching environment variables
  for subprocesses.

What the client needs (found by reading huggingface_hub 2.4.0)
--------------------------------------------------------------
* ``HEAD /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit`` (else FileMetadataError), a quoted
  ``ETag`` (the blob's name in the cache) and ``Content-Length``. ``X-Linked-Etag`` and
  ``X-Linked-Size`` take precedence when present: the Hub sends them for LFS files; this server
  sends them (the sha256) for "LFS-like" files (``lfs_patterns``, or >= 10 MiB). No ``X-Xet-Hash``
  header is ever sent, so downloads never go through xet. ``rev`` arrives quoted with safe="".
* ``GET`` of the same URL, honouring ``Range: bytes=N-`` with 206 and ``Content-Range``. The client
  resumes *within one call*: ``http_get`` catches ConnectError, TimeoutException and
  RemoteProtocolError, sleeps 1 s and asks again with a Range header (5 retries without progress).
  It resumes from what it has *written*, and it writes in ``constants.DOWNLOAD_CHUNK_SIZE`` (10 MiB)
  pieces (``iter_bytes(chunk_size=...)`` buffers), so a cut inside the first 10 MiB is retried from
  byte 0 without a Range: use a file over 10 MiB (or patch that constant) to see ``bytes=N-``.
  A call that fails deletes its partial file (a process-unique ``*.incomplete`` name), so the next
  call starts again from byte 0.
* errors: ``hf_raise_for_status`` keys on the ``X-Error-Code`` header: ``RepoNotFound`` ->
  RepositoryNotFoundError, ``RevisionNotFound`` -> RevisionNotFoundError, ``EntryNotFound`` ->
  RemoteEntryNotFoundError (the client caches ``.no_exist`` from ``X-Repo-Commit`` on that 404).
  Any other 4xx/5xx -> HfHubHTTPError.
* ``snapshot_download``: ``GET /api/models/{repo}/revision/{rev}`` (needs ``sha``), then
  ``GET /api/models/{repo}/tree/{sha}?recursive=True&expand=False`` (entries
  ``{type, oid, size, path[, lfs]}``; pagination through a ``Link`` header, never needed here),
  then HEAD + GET per file at the commit sha.
* upload: ``POST /api/repos/create`` (409 with a ``url`` in the body when it exists: ``exist_ok``
  reads it), ``POST /api/models/{repo}/preupload/{rev}`` (answered ``uploadMode: "regular"`` for
  every file, with the git-blob ``oid`` of the current file so unchanged files are skipped),
  ``POST /api/models/{repo}/commit/{rev}`` (NDJSON: ``header``, then ``file`` lines with base64
  content inline, ``deletedFile``/``deletedFolder``; answered with ``commitOid``/``commitUrl``).
  Every file being "regular", no LFS batch or xet transfer ever happens, whatever the extension.
  ``POST /api/validate-yaml`` comes first when a README.md is committed.
* also served: ``create_tag``/``delete_tag``, ``create_branch``/``delete_branch``,
  ``list_repo_refs``, ``list_repo_commits``, ``get_paths_info``, ``delete_repo``, ``whoami``.

Fault injection: ``fail_once_after_bytes[path] = N`` makes the next GET of that repo file announce
the full length, send N bytes and close the connection; ``fail_once_with_status[path] = code``
answers the next GET of that file (after any pending byte fault) with that status. ``requests``
logs every request (method, path, Range header, status, fault).

Auth: with ``token=None`` (default) anyone may write and any bearer token may read private repos;
with a token set, writes and private reads need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import importlib
import json
import os
import re
import shutil
import socket
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    import pytest

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "Commit",
    "HubError",
    "HubServer",
    "ReceivedCommit",
    "RequestRecord",
    "git_blob_oid",
    "isolate_hf_client",
    "iter_file_requests",
]

# Files served the way the Hub serves LFS files (X-Linked-Etag = sha256, "lfs" in tree listings).
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.onnx",
    "*.h5",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.pkl",
    "*.pickle",
    "*.zip",
    "*.tar",
    "*.gz",
    "*.tgz",
    "*.zst",
    "*.tflite",
    "*.ot",
    "*.arrow",
    "*.parquet",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
DEFAULT_USERNAME = "user"

_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of ``data``: the Hub's ETag for regular files, and the client's ``_local_oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


@dataclass(frozen=True)
class Commit:
    """One commit: a full snapshot ``files`` (path in repo -> sha256 of its content)."""

    sha: str
    parent: str | None
    summary: str
    description: str
    date: str
    files: dict[str, str]


@dataclass(frozen=True)
class ReceivedCommit:
    """A commit received through ``POST /api/models/{repo}/commit/{revision}``."""

    repo_id: str
    revision: str
    sha: str
    summary: str
    description: str
    parent_commit: str | None
    added: dict[str, bytes]
    deleted: tuple[str, ...]

    @property
    def paths(self) -> list[str]:
        return sorted(self.added)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # URL path, percent-decoded, without the query
    query: str
    range: str | None
    status: int
    headers: dict[str, str]  # request headers, lower-cased names
    fault: str | None = None  # what fault injection did to this request, if anything


class HubError(Exception):
    """An error answered the way the Hub answers it (status, ``X-Error-Code``, JSON ``{"error": ...}``)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


def _repo_not_found(status: int = 404) -> HubError:
    return HubError(status, "Repository not found", "RepoNotFound")


@dataclass
class _Repo:
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)  # in creation order
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "private": self.private,
            "created_at": self.created_at,
            "branches": self.branches,
            "tags": self.tags,
            "commits": [c.__dict__ for c in self.commits.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Repo:
        repo = cls(data["repo_id"], data["private"], data["created_at"])
        repo.branches = dict(data["branches"])
        repo.tags = dict(data["tags"])
        for c in data["commits"]:
            repo.commits[c["sha"]] = Commit(**c)
        return repo


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer

    def server_activate(self) -> None:
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """End keep-alive connections, so that no handler thread serves this hub after stop()."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class HubServer:
    """A thread-based Hub look-alike on ``127.0.0.1`` (port 0 = any free port); use as a context manager."""

    def __init__(
        self,
        root: Path | str,
        *,
        token: str | None = None,
        username: str = DEFAULT_USERNAME,
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
        lfs_threshold: int = LFS_SIZE_THRESHOLD,
        port: int = 0,
    ) -> None:
        self.root = Path(root)
        self.token = token
        self.username = username
        self.lfs_patterns = tuple(lfs_patterns)
        self.lfs_threshold = lfs_threshold
        self.port = port
        # Fault injection, keyed by the file's path in the repo (any repo); each entry is consumed by one GET.
        self.fail_once_after_bytes: dict[str, int] = {}
        self.fail_once_with_status: dict[str, int] = {}
        self.received_commits: list[ReceivedCommit] = []
        self.errors: list[str] = []  # tracebacks of unexpected exceptions in request handlers
        self._requests: list[RequestRecord] = []
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._blob_meta: dict[str, tuple[int, str]] = {}  # sha256 -> (size, git blob oid)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        (self.root / ".blobs").mkdir(parents=True, exist_ok=True)
        for meta in sorted(self.root.glob("*/*/repo.json")):
            repo = _Repo.from_json(json.loads(meta.read_text()))
            self._repos[repo.repo_id] = repo

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HubServer:
        if self._httpd is not None:
            return self
        httpd = _HTTPServer(("127.0.0.1", self.port), _Handler)
        httpd.hub = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="HubServer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_open_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def commits(self, repo_id: str) -> list[Commit]:
        """All commits of the repo, oldest first (every branch, in creation order)."""
        with self._lock:
            return list(self._repo(repo_id).commits.values())

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        with self._lock:
            return self._resolve(self._repo(repo_id), revision)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            repo = self._repo(repo_id)
            snapshot = dict(repo.commits[self._resolve(repo, revision)].files)
        return {path: self._read_blob(sha) for path, sha in sorted(snapshot.items())}

    def read_file(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        with self._lock:
            repo = self._repo(repo_id)
            sha256 = repo.commits[self._resolve(repo, revision)].files[path]
        return self._read_blob(sha256)

    def refs(self, repo_id: str) -> dict[str, dict[str, str]]:
        with self._lock:
            repo = self._repo(repo_id)
            return {"branches": dict(repo.branches), "tags": dict(repo.tags)}

    def has_repo(self, repo_id: str) -> bool:
        with self._lock:
            return repo_id in self._repos

    # ------------------------------------------------------------------ server-side writes

    def create_repo(
        self, repo_id: str, *, private: bool = False, exist_ok: bool = False, initial_commit: bool = True
    ) -> str | None:
        """Create a repo. Like the Hub, it starts with an "initial commit" holding ``.gitattributes``
        unless ``initial_commit=False`` (then it has no branch until the first commit to ``main``).
        Returns the head sha."""
        if not _REPO_ID_RE.match(repo_id):
            raise ValueError(f"invalid repo id {repo_id!r} (expected 'namespace/name')")
        with self._lock:
            if repo_id in self._repos:
                if not exist_ok:
                    raise FileExistsError(repo_id)
                return self._repos[repo_id].branches.get("main")
            repo = _Repo(repo_id, private, _now())
            self._repos[repo_id] = repo
            if initial_commit:
                gitattributes = "".join(
                    f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in self.lfs_patterns
                )
                files = {".gitattributes": self._put_blob(gitattributes.encode())}
                return self._new_commit(repo, "main", files, "initial commit", "").sha
            self._save(repo)
            return None

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        message: str,
        branch: str = "main",
        *,
        description: str = "",
        delete: Iterable[str] = (),
    ) -> str:
        """Commit ``files`` on top of ``branch`` (added or replaced; ``delete`` removes paths) and
        return the new commit sha. A missing repo is created (public, without the ``.gitattributes``
        initial commit)."""
        blobs = {_check_path(path): self._put_blob(data) for path, data in files.items()}
        with self._lock:
            if repo_id not in self._repos:
                self.create_repo(repo_id, initial_commit=False)
            repo = self._repos[repo_id]
            head = repo.branches.get(branch)
            if head is None and repo.commits:
                raise ValueError(f"no branch {branch!r} in {repo_id}: create it with create_branch()")
            snapshot = dict(repo.commits[head].files) if head else {}
            for path in delete:
                snapshot.pop(path)
            snapshot.update(blobs)
            return self._new_commit(repo, branch, snapshot, message, description).sha

    def create_tag(self, repo_id: str, tag: str, sha: str) -> None:
        """Tag a commit (``sha`` may be any revision: commit sha, branch or tag)."""
        with self._lock:
            repo = self._repo(repo_id)
            repo.tags[tag] = self._resolve(repo, sha)
            self._save(repo)

    def create_branch(self, repo_id: str, branch: str, revision: str = "main") -> str:
        with self._lock:
            repo = self._repo(repo_id)
            repo.branches[branch] = self._resolve(repo, revision)
            self._save(repo)
            return repo.branches[branch]

    def delete_repo(self, repo_id: str) -> None:
        with self._lock:
            self._repo(repo_id)
            del self._repos[repo_id]
            shutil.rmtree(self.root / repo_id, ignore_errors=True)

    # ------------------------------------------------------------------ internals (call with the lock held)

    def _repo(self, repo_id: str) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise KeyError(f"no repo {repo_id!r}")
        return repo

    def _authorized(self, bearer: str | None) -> bool:
        return bearer is not None if self.token is None else bearer == self.token

    def _readable(self, repo_id: str, bearer: str | None) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise _repo_not_found(404)
        if repo.private and not self._authorized(bearer):
            raise _repo_not_found(401)
        return repo

    def _check_write(self, bearer: str | None) -> None:
        if self.token is not None and bearer != self.token:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _writable(self, repo_id: str, bearer: str | None) -> _Repo:
        self._check_write(bearer)
        repo = self._repos.get(repo_id)
        if repo is None:
            raise _repo_not_found(404)
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> str:
        if revision.startswith("refs/heads/") and revision[len("refs/heads/") :] in repo.branches:
            return repo.branches[revision[len("refs/heads/") :]]
        if revision.startswith("refs/tags/") and revision[len("refs/tags/") :] in repo.tags:
            return repo.tags[revision[len("refs/tags/") :]]
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.tags:
            return repo.tags[revision]
        if _SHA_RE.match(revision) and revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_commit(
        self, repo: _Repo, branch: str, files: dict[str, str], summary: str, description: str
    ) -> Commit:
        parent = repo.branches.get(branch)
        seed = json.dumps(
            [repo.repo_id, len(repo.commits), parent, summary, description, sorted(files.items())]
        ).encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), parent, summary, description, _now(), dict(files))
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        self._save(repo)
        return commit

    def _save(self, repo: _Repo) -> None:
        target = self.root / repo.repo_id / "repo.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"repo.json.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(repo.to_json(), indent=1))
        os.replace(tmp, target)

    def _blob_path(self, sha256: str) -> Path:
        return self.root / ".blobs" / sha256

    def _put_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._blob_path(sha256)
        if not path.exists():
            tmp = path.with_name(f"{sha256}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        with self._lock:
            self._blob_meta[sha256] = (len(data), git_blob_oid(data))
        return sha256

    def _read_blob(self, sha256: str) -> bytes:
        return self._blob_path(sha256).read_bytes()

    def _meta(self, sha256: str) -> tuple[int, str]:
        with self._lock:
            meta = self._blob_meta.get(sha256)
        if meta is None:
            data = self._read_blob(sha256)
            meta = (len(data), git_blob_oid(data))
            with self._lock:
                self._blob_meta[sha256] = meta
        return meta

    def _is_lfs(self, path: str, size: int) -> bool:
        name = path.rsplit("/", 1)[-1]
        return size >= self.lfs_threshold or any(fnmatch.fnmatch(name, p) for p in self.lfs_patterns)

    def _file_entry(self, repo: _Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        sha256 = commit.files[path]
        size, oid = self._meta(sha256)
        entry: dict[str, Any] = {"type": "file", "oid": oid, "size": size, "path": path}
        if self._is_lfs(path, size):
            entry["lfs"] = {"oid": sha256, "size": size, "pointerSize": len(_lfs_pointer(sha256, size))}
        if expand:
            last = commit
            while last.parent is not None and repo.commits[last.parent].files.get(path) == sha256:
                last = repo.commits[last.parent]
            entry["lastCommit"] = {"id": last.sha, "title": last.summary, "date": last.date}
        return entry

    def _dir_entry(self, commit: Commit, path: str) -> dict[str, Any]:
        listing = sorted((p, s) for p, s in commit.files.items() if p.startswith(path + "/"))
        oid = hashlib.sha1(json.dumps(listing).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _log(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _take_fault(self, path: str) -> tuple[int | None, int | None]:
        with self._lock:
            if path in self.fail_once_after_bytes:
                return self.fail_once_after_bytes.pop(path), None
            if path in self.fail_once_with_status:
                return None, self.fail_once_with_status.pop(path)
            return None, None

    # ------------------------------------------------------------------ HTTP API (raise HubError)

    def api_file(
        self, repo_id: str, revision: str, path: str, bearer: str | None
    ) -> tuple[str, str, str, bool]:
        """(commit sha, sha256, etag, is_lfs) of a file to download."""
        with self._lock:
            repo = self._readable(repo_id, bearer)
            sha = self._resolve(repo, revision)
            sha256 = repo.commits[sha].files.get(path)
        if sha256 is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": sha})
        size, oid = self._meta(sha256)
        lfs = self._is_lfs(path, size)
        return sha, sha256, sha256 if lfs else oid, lfs

    def api_model_info(
        self, repo_id: str, revision: str | None, blobs: bool, bearer: str | None
    ) -> dict[str, Any]:
        with self._lock:
            repo = self._readable(repo_id, bearer)
            if revision is None and "main" not in repo.branches:
                commit = None
            else:
                commit = repo.commits[self._resolve(repo, revision or "main")]
            files = commit.files if commit else {}
            siblings: list[dict[str, Any]] = []
            used = 0
            for path, sha256 in sorted(files.items()):
                size, oid = self._meta(sha256)
                used += size
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    sibling.update(size=size, blobId=oid)
                    if self._is_lfs(path, size):
                        pointer = len(_lfs_pointer(sha256, size))
                        sibling["lfs"] = {"size": size, "sha256": sha256, "pointerSize": pointer}
                siblings.append(sibling)
            return {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.sha if commit else None,
                "lastModified": commit.date if commit else repo.created_at,
                "createdAt": repo.created_at,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "spaces": [],
                "usedStorage": used,
            }

    def api_tree(
        self, repo_id: str, revision: str, path: str, recursive: bool, expand: bool, bearer: str | None
    ) -> list[dict[str, Any]]:
        with self._lock:
            repo = self._readable(repo_id, bearer)
            commit = repo.commits[self._resolve(repo, revision)]
            prefix = path.strip("/")
            if prefix in commit.files:
                return [self._file_entry(repo, commit, prefix, expand)]
            base = prefix + "/" if prefix else ""
            under = sorted(p for p in commit.files if p.startswith(base))
            if prefix and not under:
                raise HubError(404, f"{prefix} does not exist on {revision}", "EntryNotFound")
            entries: dict[str, dict[str, Any]] = {}
            for p in under:
                parts = p[len(base) :].split("/")
                for i in range(1, len(parts) if recursive else min(2, len(parts))):
                    d = base + "/".join(parts[:i])
                    if d not in entries:
                        entries[d] = self._dir_entry(commit, d)
                if recursive or len(parts) == 1:
                    entries[p] = self._file_entry(repo, commit, p, expand)
            return [entries[k] for k in sorted(entries)]

    def api_paths_info(
        self, repo_id: str, revision: str, paths: list[str], expand: bool, bearer: str | None
    ) -> list[dict[str, Any]]:
        with self._lock:
            repo = self._readable(repo_id, bearer)
            commit = repo.commits[self._resolve(repo, revision)]
            out = []
            for p in paths:
                p = p.strip("/")
                if p in commit.files:
                    out.append(self._file_entry(repo, commit, p, expand))
                elif any(f.startswith(p + "/") for f in commit.files):
                    out.append(self._dir_entry(commit, p))
            return out

    def api_refs(self, repo_id: str, bearer: str | None) -> dict[str, Any]:
        with self._lock:
            repo = self._readable(repo_id, bearer)

            def refs(kind: str, names: dict[str, str]) -> list[dict[str, str]]:
                return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s} for n, s in names.items()]

            return {
                "branches": refs("heads", repo.branches),
                "converts": [],
                "tags": refs("tags", repo.tags),
                "pullRequests": [],
            }

    def api_commits(self, repo_id: str, revision: str, bearer: str | None) -> list[dict[str, Any]]:
        with self._lock:
            repo = self._readable(repo_id, bearer)
            sha: str | None = self._resolve(repo, revision)
            out = []
            while sha is not None:
                c = repo.commits[sha]
                out.append(
                    {
                        "id": c.sha,
                        "title": c.summary,
                        "message": c.description,
                        "date": c.date,
                        "authors": [{"user": self.username}],
                    }
                )
                sha = c.parent
            return out

    def api_create_repo(self, payload: dict[str, Any], bearer: str | None, base_url: str) -> dict[str, Any]:
        self._check_write(bearer)
        if payload.get("type") not in (None, "model"):
            raise HubError(400, f"This test server only hosts model repos, not {payload.get('type')!r}")
        name = payload.get("name")
        repo_id = f"{payload.get('organization') or self.username}/{name}"
        if not isinstance(name, str) or not _REPO_ID_RE.match(repo_id):
            raise HubError(400, f"Invalid repo name: {repo_id!r}")
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = f"{base_url}/{repo_id}"
        with self._lock:
            if repo_id in self._repos:
                raise HubError(409, "You already created this model repo", extra={"url": url})
            self.create_repo(repo_id, private=private)
        return {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]}

    def api_delete_repo(self, payload: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        self._check_write(bearer)
        repo_id = f"{payload.get('organization') or self.username}/{payload.get('name')}"
        with self._lock:
            if repo_id not in self._repos:
                raise _repo_not_found()
            self.delete_repo(repo_id)
        return {}

    def api_preupload(
        self, repo_id: str, revision: str, payload: dict[str, Any], bearer: str | None
    ) -> dict[str, Any]:
        with self._lock:
            repo = self._writable(repo_id, bearer)
            if not repo.commits and revision == "main":
                sha, current = None, {}
            else:
                sha = self._resolve(repo, revision)
                current = repo.commits[sha].files
            answers = []
            for f in payload.get("files", []):
                path = f["path"]
                oid = self._meta(current[path])[1] if path in current else None
                answers.append({"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
            return {"files": answers, "commitOid": sha}

    def api_commit(
        self,
        repo_id: str,
        revision: str,
        lines: list[dict[str, Any]],
        create_pr: bool,
        bearer: str | None,
        base_url: str,
    ) -> dict[str, Any]:
        if create_pr:
            raise HubError(400, "create_pr is not supported by this test server")
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first NDJSON line must be the commit header")
        header = lines[0]["value"]
        summary = header.get("summary")
        if not summary:
            raise HubError(400, "Commit summary is required")
        description = header.get("description") or ""
        parent_commit = header.get("parentCommit")
        added: dict[str, bytes] = {}
        deleted: list[str] = []
        with self._lock:
            repo = self._writable(repo_id, bearer)
            branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
            head = repo.branches.get(branch)
            if head is None and repo.commits:
                self._resolve(repo, revision)  # 404 RevisionNotFound when it is nothing at all
                raise HubError(400, f"Cannot commit to {revision!r}: not a branch")
            if parent_commit is not None and parent_commit != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            snapshot = dict(repo.commits[head].files) if head else {}
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value") or {}
                if key == "file":
                    path = _check_path(value["path"])
                    content = value.get("content", "")
                    data = (
                        base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    )
                    snapshot[path] = self._put_blob(data)
                    added[path] = data
                elif key == "lfsFile":
                    path, oid = _check_path(value["path"]), value["oid"]
                    if not self._blob_path(oid).exists():
                        raise HubError(
                            400,
                            f"LFS object {oid} for {path} was never uploaded (this server answers uploadMode "
                            "'regular', so clients send contents inline)",
                        )
                    snapshot[path] = oid
                    added[path] = self._read_blob(oid)
                elif key == "deletedFile":
                    path = value["path"]
                    if snapshot.pop(path, None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                    deleted.append(path)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    gone = [p for p in snapshot if p.startswith(prefix)]
                    if not gone:
                        raise HubError(404, "A folder with this name doesn't exist", "EntryNotFound")
                    for p in gone:
                        del snapshot[p]
                    deleted.extend(gone)
                else:
                    raise HubError(400, f"Unsupported commit operation {key!r}")
            commit = self._new_commit(repo, branch, snapshot, summary, description)
            self.received_commits.append(
                ReceivedCommit(
                    repo_id, revision, commit.sha, summary, description, parent_commit, added, tuple(deleted)
                )
            )
        return {
            "success": True,
            "commitOid": commit.sha,
            "commitUrl": f"{base_url}/{repo_id}/commit/{commit.sha}",
            "hookOutput": "",
        }

    def api_create_tag(
        self, repo_id: str, revision: str, payload: dict[str, Any], bearer: str | None
    ) -> None:
        with self._lock:
            repo = self._writable(repo_id, bearer)
            sha = self._resolve(repo, revision)
            tag = payload.get("tag")
            if not isinstance(tag, str) or not tag:
                raise HubError(400, "Missing tag name")
            if tag in repo.tags:
                raise HubError(409, f"Tag {tag} already exists")
            repo.tags[tag] = sha
            self._save(repo)

    def api_create_branch(
        self, repo_id: str, branch: str, payload: dict[str, Any], bearer: str | None
    ) -> None:
        with self._lock:
            repo = self._writable(repo_id, bearer)
            if branch in repo.branches:
                raise HubError(409, f"Branch {branch} already exists")
            repo.branches[branch] = self._resolve(repo, payload.get("startingPoint") or "main")
            self._save(repo)

    def api_delete_ref(self, repo_id: str, kind: str, name: str, bearer: str | None) -> None:
        with self._lock:
            repo = self._writable(repo_id, bearer)
            refs = repo.tags if kind == "tag" else repo.branches
            if name not in refs:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            del refs[name]
            self._save(repo)


def _truthy(values: list[str] | None) -> bool:
    return values is not None and len(values) > 0 and values[-1].lower() in ("1", "true", "yes")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single ``bytes=`` range; None to ignore it; 416 if unsatisfiable."""
    match = _RANGE_RE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    elif last:
        start, end = max(size - int(last), 0), size - 1
    else:
        return None
    if start >= size or start > end:
        raise HubError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, end


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub
    server_version = "HubServer/1.0"
    timeout = 60  # idle keep-alive connections give up after this
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ plumbing

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        self._status = 0
        self._fault: str | None = None
        split = urlsplit(self.path)
        try:
            self._route(method, split.path, split.query)
        except HubError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            hub.errors.append(traceback.format_exc())
            if self._status == 0:
                self._send_error(HubError(500, "Internal test-server error"))
            self.close_connection = True
        finally:
            hub._log(
                RequestRecord(
                    method=method,
                    path=unquote(split.path),
                    query=split.query,
                    range=self.headers.get("Range"),
                    status=self._status,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    fault=self._fault,
                )
            )

    def _bearer(self) -> str | None:
        value = self.headers.get("Authorization") or ""
        return value[7:].strip() if value.lower().startswith("bearer ") else None

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.server.hub.url

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _start(self, status: int, headers: dict[str, str], length: int) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self._status = status

    def _send_json(self, obj: Any, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self._start(status, {"Content-Type": "application/json; charset=utf-8"}, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, err: HubError) -> None:
        body = json.dumps({"error": err.message, **err.extra}).encode()
        safe_message = err.message.encode("ascii", "backslashreplace").decode()  # headers are latin-1
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": safe_message}
        if err.code:
            headers["X-Error-Code"] = err.code
        headers.update(err.headers)
        self._start(err.status, headers, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    # ------------------------------------------------------------------ routes

    def _route(self, method: str, raw_path: str, raw_query: str) -> None:
        # Split before unquoting: revisions arrive quoted with safe="" (so "refs%2Fpr%2F1" is one segment).
        segs = [unquote(s) for s in raw_path.split("/")[1:]]
        query = parse_qs(raw_query)
        body = self._read_body() if method in ("POST", "PUT", "DELETE") else b""
        if segs and segs[0] == "api":
            self._api(method, segs[1:], query, body)
        elif len(segs) >= 5 and segs[2] == "resolve" and method in ("GET", "HEAD"):
            self._resolve_file(method, f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
        elif len(segs) >= 6 and segs[0] in ("datasets", "spaces", "kernels") and segs[3] == "resolve":
            raise _repo_not_found()
        else:
            raise HubError(404, f"Not found: {method} {raw_path}")

    def _api(self, method: str, segs: list[str], query: dict[str, list[str]], body: bytes) -> None:
        hub, bearer = self.server.hub, self._bearer()
        head = segs[0] if segs else ""

        def payload() -> dict[str, Any]:
            try:
                value = json.loads(body or b"{}")
            except ValueError as exc:
                raise HubError(400, f"Invalid JSON body: {exc}") from exc
            if not isinstance(value, dict):
                raise HubError(400, "Expected a JSON object")
            return value

        if head == "whoami-v2" and method == "GET":
            if not hub._authorized(bearer):
                raise HubError(401, "Invalid credentials in Authorization header")
            auth = {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}
            self._send_json(
                {"type": "user", "name": hub.username, "fullname": hub.username, "orgs": [], "auth": auth}
            )
        elif head == "validate-yaml" and method == "POST":
            self._send_json({"errors": [], "warnings": []})
        elif segs == ["repos", "create"] and method == "POST":
            self._send_json(hub.api_create_repo(payload(), bearer, self._base_url()))
        elif segs == ["repos", "delete"] and method == "DELETE":
            self._send_json(hub.api_delete_repo(payload(), bearer))
        elif head in ("datasets", "spaces", "kernels") and len(segs) >= 3:
            raise _repo_not_found()
        elif head == "models" and len(segs) >= 3:
            self._api_model(method, f"{segs[1]}/{segs[2]}", segs[3:], query, body, payload)
        else:
            raise HubError(404, f"Not found: {method} /api/{'/'.join(segs)}")

    def _api_model(
        self,
        method: str,
        repo_id: str,
        rest: list[str],
        query: dict[str, list[str]],
        body: bytes,
        payload: Any,
    ) -> None:
        hub, bearer = self.server.hub, self._bearer()
        action = rest[0] if rest else None
        arg = "/".join(rest[1:])  # revision, branch or tag name (already percent-decoded)
        if method == "GET" and action is None:
            self._send_json(hub.api_model_info(repo_id, None, _truthy(query.get("blobs")), bearer))
        elif method == "GET" and action == "revision" and arg:
            self._send_json(hub.api_model_info(repo_id, arg, _truthy(query.get("blobs")), bearer))
        elif method == "GET" and action == "tree" and len(rest) >= 2:
            revision, path = rest[1], "/".join(rest[2:])
            recursive, expand = _truthy(query.get("recursive")), _truthy(query.get("expand"))
            self._send_json(hub.api_tree(repo_id, revision, path, recursive, expand, bearer))
        elif method == "POST" and action == "paths-info" and arg:
            form = parse_qs(body.decode())
            self._send_json(
                hub.api_paths_info(repo_id, arg, form.get("paths", []), _truthy(form.get("expand")), bearer)
            )
        elif method == "GET" and action == "refs":
            self._send_json(hub.api_refs(repo_id, bearer))
        elif method == "GET" and action == "commits" and arg:
            self._send_json(hub.api_commits(repo_id, arg, bearer))
        elif method == "POST" and action == "preupload" and arg:
            self._send_json(hub.api_preupload(repo_id, arg, payload(), bearer))
        elif method == "POST" and action == "commit" and arg:
            try:
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            except ValueError as exc:
                raise HubError(400, f"Invalid NDJSON body: {exc}") from exc
            create_pr = _truthy(query.get("create_pr"))
            self._send_json(hub.api_commit(repo_id, arg, lines, create_pr, bearer, self._base_url()))
        elif method == "POST" and action == "tag" and arg:
            hub.api_create_tag(repo_id, arg, payload(), bearer)
            self._send_json({})
        elif method == "POST" and action == "branch" and arg:
            hub.api_create_branch(repo_id, arg, payload(), bearer)
            self._send_json({})
        elif method == "DELETE" and action in ("tag", "branch") and arg:
            hub.api_delete_ref(repo_id, action, arg, bearer)
            self._send_json({})
        else:
            raise HubError(404, f"Not found: {method} /api/models/{repo_id}/{'/'.join(rest)}")

    def _resolve_file(self, method: str, repo_id: str, revision: str, path: str) -> None:
        hub = self.server.hub
        commit_sha, sha256, etag, lfs = hub.api_file(repo_id, revision, path, self._bearer())
        data = hub._read_blob(sha256)
        size = len(data)
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{etag}"',
            "X-Repo-Commit": commit_sha,
        }
        if lfs:
            headers["X-Linked-Etag"] = f'"{sha256}"'
            headers["X-Linked-Size"] = str(size)
        status, start, end = 200, 0, size - 1
        requested = self.headers.get("Range")
        if requested and size > 0:
            parsed = _parse_range(requested, size)
            if parsed is not None:
                status, (start, end) = 206, parsed
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        part = data[start : end + 1]
        if method == "HEAD":
            self._start(status, headers, len(part))
            return
        cut, fail_status = hub._take_fault(path)
        if fail_status is not None:
            self._fault = f"status {fail_status}"
            raise HubError(fail_status, f"Injected failure for {path}")
        self._start(status, headers, len(part))
        if cut is not None and cut < len(part):
            self._fault = f"closed after {cut} of {len(part)} bytes"
            self.wfile.write(part[:cut])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
            return
        self.wfile.write(part)


def isolate_hf_client(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path | str) -> None:
    """Point the installed ``huggingface_hub`` at ``endpoint`` and keep everything it writes under ``home``.

    Patches the constants the client already read at import time (see the module docstring) and sets the
    environment variables, so that subprocesses started by the test see the same configuration.
    """
    from huggingface_hub import constants, hf_api

    home = Path(home)
    paths = {
        "HF_HOME": home,
        "HF_HUB_CACHE": home / "hub",
        "HF_ASSETS_CACHE": home / "assets",
        "HF_XET_CACHE": home / "xet",
        "HF_TOKEN_PATH": home / "token",
    }
    for name, value in paths.items():
        monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(constants, name, str(value), raising=False)
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"), raising=False)
    monkeypatch.setattr(
        constants, "CHECK_FOR_UPDATE_DONE_PATH", str(home / ".check_for_update_done"), raising=False
    )
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"), raising=False)
    for env in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_ENDPOINT",
    ):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    flags = {
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": True,
        "HF_HUB_DISABLE_PROGRESS_BARS": True,
        "HF_HUB_OFFLINE": False,
    }
    for name, on in flags.items():
        if on:
            monkeypatch.setenv(name, "1")
        monkeypatch.setattr(constants, name, on, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    # Modules that copied a constant with ``from ..constants import X``. (``import a.utils.tqdm as m`` would
    # bind the ``tqdm`` class that ``huggingface_hub.utils`` re-exports, hence import_module.)
    cache_manager = importlib.import_module("huggingface_hub.utils._cache_manager")
    hf_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    monkeypatch.setattr(cache_manager, "HF_HUB_CACHE", str(home / "hub"), raising=False)
    monkeypatch.setattr(hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", True, raising=False)


def iter_file_requests(requests: Iterable[RequestRecord], path_suffix: str) -> Iterator[RequestRecord]:
    """The ``/resolve/`` requests whose path ends with ``path_suffix``."""
    return (r for r in requests if "/resolve/" in r.path and r.path.endswith(path_suffix))
