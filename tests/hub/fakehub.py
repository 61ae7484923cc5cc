"""A fake of ``huggingface_hub`` at the API boundary wmsim's ``hub`` package calls: ``HfApi`` (``model_info``,
``create_repo``, ``create_commit``, ``create_tag``), ``snapshot_download`` and the client's public error
types. Repos live in memory; the local cache is a folder in the Hub's layout. Every call is recorded,
and any call can be made to raise (``fail``), so tests of wmsim's own logic (error mapping, refusals,
what gets pushed, the resolution order) need no network, no server and no client internals.

    fake = FakeHub(tmp_path / "cache")
    fake.install(monkeypatch)
    fake.add("owner/toy", {"config.json": b"{...}"}, refs=("main",))
"""

from __future__ import annotations

import fnmatch
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import errors


def hf_error(cls: type[Exception], message: str, status: int = 404) -> Exception:
    """An instance of one of the client's HTTP error types, as it raises them (with a response of its own
    HTTP library)."""
    if not issubclass(cls, errors.HfHubHTTPError):
        return cls(message)
    http = sys.modules[errors.HTTPError.__module__]
    response = http.Response(status, request=http.Request("GET", "https://hub.invalid/api"))
    return cls(message, response=response)


@dataclass
class Call:
    name: str
    kwargs: dict[str, Any]


@dataclass
class FakeHub:
    cache: Path
    repos: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> ref -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files
    messages: dict[str, str] = field(default_factory=dict)  # commit -> message
    private: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)  # call name -> raised (once)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(huggingface_hub, "HfApi", self._api)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", self.snapshot_download)

    # ------------------------------------------------------------------ setting up repos
    def add(
        self, repo_id: str, files: dict[str, bytes], refs: tuple[str, ...] = ("main",), message: str = ""
    ) -> str:
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + files[name])
        commit = digest.hexdigest()
        self.commits[commit] = dict(files)
        self.messages[commit] = message
        for ref in refs:
            self.repos.setdefault(repo_id, {})[ref] = commit
        return commit

    def add_folder(self, repo_id: str, folder: Path, refs: tuple[str, ...] = ("main",)) -> str:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        return self.add(repo_id, files, refs)

    def names(self) -> list[str]:
        return [call.name for call in self.calls]

    # ------------------------------------------------------------------ the client's API
    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append(Call(name, kwargs))
        if name in self.fail:
            raise self.fail.pop(name)

    def _commit(self, repo_id: str, revision: str | None) -> str:
        if repo_id not in self.repos:
            raise hf_error(errors.RepositoryNotFoundError, f"404 Repository Not Found: {repo_id}")
        refs = self.repos[repo_id]
        revision = revision or "main"
        if revision in refs:
            return refs[revision]
        if revision in self.commits and revision in refs.values():
            return revision
        raise hf_error(errors.RevisionNotFoundError, f"404 Revision Not Found: {revision}")

    def _api(self, token: str | bool | None = None, **_: Any) -> SimpleNamespace:
        def model_info(repo_id: str, revision: str | None = None, **kwargs: Any) -> SimpleNamespace:
            self._record("model_info", repo_id=repo_id, revision=revision, token=token)
            files = self.commits[self._commit(repo_id, revision)]
            return SimpleNamespace(siblings=[SimpleNamespace(rfilename=name) for name in sorted(files)])

        def create_repo(repo_id: str, **kwargs: Any) -> None:
            self._record("create_repo", repo_id=repo_id, token=token, **kwargs)
            if repo_id not in self.repos:
                self.repos[repo_id] = {}
                if kwargs.get("private"):
                    self.private.add(repo_id)

        def create_commit(repo_id: str, operations: list[Any], **kwargs: Any) -> SimpleNamespace:
            self._record("create_commit", repo_id=repo_id, operations=operations, token=token, **kwargs)
            branch = kwargs.get("revision") or "main"
            parent = self.repos[repo_id].get(branch)
            files = dict(self.commits[parent]) if parent else {}
            for op in operations:
                files[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
            pr = bool(kwargs.get("create_pr"))
            commit = self.add(
                repo_id, files, refs=() if pr else (branch,), message=kwargs.get("commit_message", "")
            )
            url = f"https://hub.invalid/{repo_id}/commit/{commit}"
            return SimpleNamespace(
                oid=commit,
                commit_url=url,
                pr_url=f"https://hub.invalid/{repo_id}/discussions/1" if pr else None,
            )

        def create_tag(repo_id: str, *, tag: str, revision: str | None = None, **kwargs: Any) -> None:
            self._record("create_tag", repo_id=repo_id, tag=tag, revision=revision, token=token)
            self.repos[repo_id][tag] = self._commit(repo_id, revision)

        return SimpleNamespace(
            model_info=model_info, create_repo=create_repo, create_commit=create_commit, create_tag=create_tag
        )

    def snapshot_download(self, repo_id: str, *, revision: str | None = None, **kwargs: Any) -> str:
        self._record("snapshot_download", repo_id=repo_id, revision=revision, **kwargs)
        cache = Path(kwargs.get("cache_dir") or self.cache)
        folder = cache / ("models--" + repo_id.replace("/", "--"))
        ref = folder / "refs" / (revision or "main")
        if kwargs.get("local_files_only"):
            commit = ref.read_text() if ref.is_file() else revision
            snapshot = folder / "snapshots" / str(commit)
            if commit is None or not snapshot.is_dir():
                raise errors.LocalEntryNotFoundError(f"{repo_id}@{revision} is not in the cache")
            return str(snapshot)
        commit = self._commit(repo_id, revision)
        snapshot = folder / "snapshots" / commit
        for name, data in self.commits[commit].items():
            if any(fnmatch.fnmatch(name, p) for p in kwargs.get("allow_patterns") or ["*"]):
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                (snapshot / name).write_bytes(data)
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
        return str(snapshot)
