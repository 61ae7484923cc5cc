"""Hub tests: offline by default; a test that needs the Hub points the client at a loopback server."""

from __future__ import annotations

import os
import tempfile

# Nothing at test time reaches the network: the Hub client is offline and caches in a temporary
# folder (set before anything imports huggingface_hub; Hub tests opt back in against a loopback server).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="wmsim-test-hf-home-"))
