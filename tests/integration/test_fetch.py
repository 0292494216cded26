"""`kubeformer fetch`, the Triton pods' init container, when S3 fails and when it is retried.

A pod's init container that fails is restarted by the kubelet with the same emptyDir, so a retry
must start clean from whatever the failed attempt left, and a failed attempt must never leave
something that looks complete.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubeformer_builder import storage
from kubeformer_builder.config import Task
from kubeformer_builder.manifest import MANIFEST_NAME, REPOSITORY_DIR
from tests.fixtures.processes import free_port

pytestmark = pytest.mark.integration


def fetch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "kubeformer_builder.cli.main", "fetch", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


@pytest.fixture
def stored_artifact(tiny_build, s3_server) -> str:
    _, artifact = tiny_build("bert", Task.TEXT_CLASSIFICATION, precision="fp32")
    uri = f"s3://{s3_server.new_bucket()}/fetch/artifact"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.env().items():
            patch.setenv(name, value)
        storage.upload_dir(artifact, uri, s3_server.endpoint)
    return uri


def test_unreachable_storage_fails_with_the_cause_and_leaves_nothing_complete(tmp_path, s3_server):
    dest = tmp_path / "models"
    endpoint = f"http://127.0.0.1:{free_port()}"
    done = fetch("s3://bucket/some/artifact", str(dest), f"--s3-endpoint={endpoint}", env=s3_server.env())
    assert done.returncode == 5, done.stderr
    assert "cannot reach the S3 endpoint" in done.stderr
    assert not (dest / MANIFEST_NAME).exists()


def test_a_retry_replaces_what_a_failed_attempt_left(tmp_path, s3_server, stored_artifact):
    dest = tmp_path / "models"
    (dest / REPOSITORY_DIR).mkdir(parents=True)
    (dest / REPOSITORY_DIR / "half-downloaded.onnx").write_bytes(b"\0" * 10)
    args = (stored_artifact, str(dest), f"--s3-endpoint={s3_server.endpoint}", "--instance-kind=cpu")
    refused = fetch(*args, env=s3_server.env())
    assert refused.returncode == 7 and "destination is not empty" in refused.stderr
    done = fetch(*args, "--replace", env=s3_server.env())
    assert done.returncode == 0, done.stderr
    assert (dest / MANIFEST_NAME).is_file()
    assert not (dest / REPOSITORY_DIR / "half-downloaded.onnx").exists()
