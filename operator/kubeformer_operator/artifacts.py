"""The operator's only contact with object storage: find a complete artifact, delete an object's artifacts.

An artifact exists when its manifest.json does (the builder writes it last); its report.json holds
the benchmark the status shows.
"""

from __future__ import annotations

import json

from kubeformer_builder.errors import ArtifactError
from kubeformer_builder.manifest import MANIFEST_NAME, parse_manifest
from kubeformer_builder.publish import REPORT_NAME
from kubeformer_builder.storage import Credentials, delete_prefix, read_object
from kubeformer_operator.status import Engine


def find_engine(uri: str, endpoint: str | None, credentials: Credentials | None) -> Engine | None:
    """The artifact at `uri` if complete, else None; storage failures raise StorageError."""
    text = read_object(f"{uri}/{MANIFEST_NAME}", endpoint, credentials)
    if text is None:
        return None
    manifest = parse_manifest(text.decode(), uri)
    report = read_object(f"{uri}/{REPORT_NAME}", endpoint, credentials)
    try:
        benchmark = json.loads(report).get("benchmark", {}) if report else {}
    except ValueError as error:
        raise ArtifactError(f"{uri}/{REPORT_NAME}: not valid JSON: {error}") from error
    return Engine(
        uri=uri,
        precision=manifest.precision,
        backend=manifest.backend,
        variant=manifest.variant,
        size_bytes=manifest.size_bytes,
        gpu_arch=manifest.versions.get("gpu_arch"),
        gpu_product=manifest.versions.get("gpu_product"),
        tensorrt_version=manifest.versions.get("tensorrt"),
        cpu_isa=(manifest.cpu or {}).get("isa"),
        benchmark=benchmark if isinstance(benchmark, dict) else {},
    )


def delete_artifacts(prefix: str, endpoint: str | None, credentials: Credentials | None) -> None:
    """Every artifact under one object's prefix; manifests go first, so none looks complete meanwhile."""
    delete_prefix(prefix, endpoint, credentials)
