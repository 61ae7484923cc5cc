"""Hub tests: offline by default; tests of the Hub logic fake the client (fakehub.py), and one smoke test
points a child process at a loopback server."""

from __future__ import annotations

import os
import tempfile

# Nothing at test time reaches the network: the Hub client is offline and caches in a temporary
# folder (set before anything imports huggingface_hub; test_hub.py fakes the client, online).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="wmsim-test-hf-home-"))
