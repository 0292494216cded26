"""Where artifacts live: find a complete one for a cache key, publish a new one manifest-last.

A directory output or an s3:// prefix; either way a reader that sees manifest.json sees a
complete artifact, and a failed publish leaves no manifest behind.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeformer_builder import storage
from kubeformer_builder.errors import ArtifactError, ConfigError, KubeformerError
from kubeformer_builder.manifest import MANIFEST_NAME, Manifest, parse_manifest, verify_artifact

log = logging.getLogger("kubeformer.publish")
REPORT_NAME = "report.json"
_OUR_ENTRIES = {"model_repository", REPORT_NAME, MANIFEST_NAME}


@dataclass(frozen=True)
class BuildResult:
    location: str
    cache_key: str
    name: str
    task: str
    backend: str
    precision: str
    variant: str
    size_bytes: int
    cached: bool
    benchmark: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": "succeeded", **self.__dict__}


def result_from(manifest: Manifest, location: str, cached: bool, benchmark: dict) -> BuildResult:
    return BuildResult(
        location=location,
        cache_key=manifest.cache_key,
        name=manifest.name,
        task=manifest.task,
        backend=manifest.backend,
        precision=manifest.precision,
        variant=manifest.variant,
        size_bytes=manifest.size_bytes,
        cached=cached,
        benchmark=benchmark,
        versions=manifest.versions,
    )


def find_existing(output: str, key: str, endpoint: str | None) -> BuildResult | None:
    """A complete artifact for the same key at `output`, or None (a different key is rebuilt)."""
    if output.startswith("s3://"):
        text = storage.read_object(f"{output.rstrip('/')}/{MANIFEST_NAME}", endpoint)
        if text is None:
            return None
        manifest = parse_manifest(text.decode(), output)
        report = storage.read_object(f"{output.rstrip('/')}/{REPORT_NAME}", endpoint)
    else:
        root = Path(output)
        if not (root / MANIFEST_NAME).is_file():
            return None
        try:
            manifest = verify_artifact(root)
        except ArtifactError as exc:
            log.warning("existing artifact at %s is invalid, rebuilding: %s", output, exc)
            return None
        report = (root / REPORT_NAME).read_bytes() if (root / REPORT_NAME).is_file() else None
    if manifest.cache_key != key:
        return None
    benchmark = json.loads(report).get("benchmark", {}) if report else {}
    return result_from(manifest, output, cached=True, benchmark=benchmark)


def publish(artifact: Path, output: str, endpoint: str | None) -> None:
    """Copy the finished artifact out, manifest last; a failed upload is removed again."""
    if output.startswith("s3://"):
        try:
            storage.upload_dir(artifact, output, endpoint)
        except KubeformerError:
            _remove_partial_upload(output, endpoint)
            raise
        return
    target = Path(output)
    clear_output_dir(target)
    target.mkdir(parents=True, exist_ok=True)
    for child in artifact.iterdir():
        if child.name != MANIFEST_NAME:
            (shutil.copytree if child.is_dir() else shutil.copy2)(child, target / child.name)
    shutil.copy2(artifact / MANIFEST_NAME, target / MANIFEST_NAME)


def _remove_partial_upload(output: str, endpoint: str | None) -> None:
    try:
        storage.delete_prefix(output, endpoint)
    except KubeformerError as exc:  # the original failure is the one to report
        log.warning("could not remove the partial upload at %s: %s", output, exc)


def clear_output_dir(target: Path) -> None:
    """Remove a previous artifact (manifest first); refuse to touch a directory that is not ours."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"output: {target} exists and is not a directory")
    foreign = sorted(child.name for child in target.iterdir() if child.name not in _OUR_ENTRIES)
    if foreign:
        raise ConfigError(
            f"output: {target} is not empty and not a kubeformer artifact (found {', '.join(foreign[:3])})"
        )
    (target / MANIFEST_NAME).unlink(missing_ok=True)
    for child in target.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
