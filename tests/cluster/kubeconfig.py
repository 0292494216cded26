"""Kubeconfig files for the test control plane's clients.

Certificates are embedded rather than referenced by path, so a kubeconfig stays valid when copied
(e.g. `.cluster/kubeconfig` handed to another tool or container).
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tests.cluster.pki import CertPair

CONTEXT = "kubeformer-test"


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client: CertPair) -> Path:
    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}
        ],
        "users": [
            {
                "name": CONTEXT,
                "user": {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)},
            }
        ],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"}}
        ],
        "current-context": CONTEXT,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
