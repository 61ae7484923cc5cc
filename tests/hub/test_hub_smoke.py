"""One smoke test over real HTTP: the installed ``huggingface_hub`` client, pointed by ``HF_ENDPOINT`` at
a read-only loopback server holding one bundle repo, downloads it for ``Bundle.from_pretrained``. It
checks that wmsim and the client still speak to each other; wmsim's own Hub logic is tested against a
fake client in test_hub.py. The server answers the few read endpoints a download uses (repo info,
tree, file metadata and content); anything else is a 404 that fails the test."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from hubcache import make_bundle

from wmsim.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[2]
REPO = "owner/toy"


class ReadOnlyHub(ThreadingHTTPServer):
    """Serves ``files`` as the one commit ``sha`` of ``REPO`` (every revision name resolves to it)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files
        self.sha = hashlib.sha1(b"".join(files[name] for name in sorted(files))).hexdigest()
        self.requests: list[str] = []
        self.unknown: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: ReadOnlyHub

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data: object) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _handle(self, head: bool) -> None:
        hub, path = self.server, unquote(urlparse(self.path).path)
        hub.requests.append(f"{self.command} {path}")
        files = hub.files
        info_prefix, tree_prefix = f"/api/models/{REPO}/revision/", f"/api/models/{REPO}/tree/"
        file_prefix = f"/{REPO}/resolve/"
        if path == f"/api/models/{REPO}" or path.startswith(info_prefix):
            self._json({"id": REPO, "sha": hub.sha, "siblings": [{"rfilename": n} for n in sorted(files)]})
        elif path.startswith(tree_prefix):
            self._json(
                [
                    {"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                    for n, d in sorted(files.items())
                ]
            )
        elif path.startswith(file_prefix) and path[len(file_prefix) :].split("/", 1)[-1] in files:
            data = files[path[len(file_prefix) :].split("/", 1)[1]]
            headers = {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": hub.sha}
            self._send(200, data, {**headers, "Content-Type": "application/octet-stream"}, head)
        else:
            hub.unknown.append(f"{self.command} {path}")
            self._send(
                404, b"{}", {"X-Error-Code": "EntryNotFound", "Content-Type": "application/json"}, head
            )

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ReadOnlyHub]:
    folder = make_bundle(tmp_path / "bundle", seed=7)
    hub = ReadOnlyHub({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    yield hub
    hub.shutdown()
    hub.server_close()


def test_from_pretrained_downloads_a_bundle_over_http(server: ReadOnlyHub, tmp_path: Path) -> None:
    code = f"from wmsim.bundle import Bundle\nbundle = Bundle.from_pretrained({REPO!r})\nprint(bundle.path)\n"
    env = {
        **os.environ,
        "HF_ENDPOINT": server.url,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:] + f"\nunanswered: {server.unknown}"
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_relative_to(tmp_path / "hf-home") and path.name == server.sha  # in the Hub cache
    assert {p.name for p in path.iterdir()} == set(server.files)
    expected = load_bundle(tmp_path / "bundle").model.state_dict()
    assert all((load_bundle(path).model.state_dict()[k] == v).all() for k, v in expected.items())
    assert any(r.startswith("GET /owner/toy/resolve/") for r in server.requests)
