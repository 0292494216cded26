"""hf:// sources go through the real huggingface_hub download, with the revision and token.

The hub is not reachable here, so a loopback HTTP server stands in for it (HF_ENDPOINT) and
records what the client asked for; it answers 401 like the hub does for a gated repository.
"""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

pytestmark = pytest.mark.integration


class RecordingHub(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self):
        self.requests.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingHub)
    RecordingHub.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", RecordingHub.requests
    server.shutdown()


def test_hub_download_sends_revision_and_token_and_reports_clearly(hub, tmp_path):
    endpoint, requests = hub
    env = {"HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_test_token_123", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HOME": str(tmp_path / "hf-home"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "kubeformer_builder.cli.main", "build", "hf://acme/private-bert",
         "--revision", "v1.2", "--task", "text-classification", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    assert "model.source: hf://acme/private-bert not found or not accessible with this token" in result.stderr
    assert requests, "the hub client never called the endpoint"
    path, authorization = requests[0]
    assert path.startswith("/api/models/acme/private-bert/revision/v1.2")
    assert authorization == "Bearer hf_test_token_123"
    assert not (tmp_path / "out").exists()


def test_hub_dataset_download_asks_for_the_dataset_repository(hub, tmp_path):
    from kubeformer_builder.config import Task
    from tests.fixtures.models import make_tiny_model

    model = make_tiny_model("bert", Task.TEXT_CLASSIFICATION, tmp_path / "model")
    endpoint, requests = hub
    env = {"HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_test_token_123", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HOME": str(tmp_path / "hf-home"), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "kubeformer_builder.cli.main", "build", f"file://{model}",
         "--task", "text-classification", "--evaluation", "hf://acme/reviews/data/test.parquet",
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    assert "optimization.evaluation.source: hf://acme/reviews not found or not accessible" in result.stderr
    path, authorization = requests[0]
    assert path.startswith("/api/datasets/acme/reviews/revision/main")
    assert authorization == "Bearer hf_test_token_123"
    assert "stage export" not in result.stderr and not (tmp_path / "out").exists()
