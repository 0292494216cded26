"""The artifact manifest: what a build produced, with a sha256 of every file.

`manifest.json` is written last, so its presence means the artifact is complete; readers
verify every listed file before they trust it (see docs/artifact-format.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubeformer_builder.errors import ArtifactError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REPOSITORY_DIR = "model_repository"  # the Triton model repository inside an artifact
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    cache_key: str
    name: str
    task: str
    backend: str
    precision: str
    variant: str
    inputs: dict[str, Any]
    versions: dict[str, Any]
    files: tuple[FileEntry, ...]
    # The build CPU (isa.CpuInfo.to_dict()) and the int8 scheme kept; None for TensorRT builds.
    cpu: dict[str, Any] | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        body = {
            "schema_version": self.schema_version,
            "cache_key": self.cache_key,
            "name": self.name,
            "task": self.task,
            "backend": self.backend,
            "precision": self.precision,
            "variant": self.variant,
            "inputs": self.inputs,
            "versions": self.versions,
            "cpu": self.cpu,
            "files": [vars(entry) for entry in self.files],
            "created": self.created,
        }
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @property
    def size_bytes(self) -> int:
        return sum(entry.size for entry in self.files)


def list_files(root: Path) -> tuple[FileEntry, ...]:
    """Every file under root except the manifest, sorted, with size and sha256."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative == MANIFEST_NAME:
            continue
        entries.append(FileEntry(relative, path.stat().st_size, sha256_file(path)))
    return tuple(entries)


def parse_manifest(text: str, origin: str) -> Manifest:
    """Parse manifest JSON; a manifest of an unknown schema version is refused, not guessed at."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{origin}: manifest.json is not valid JSON ({exc})") from exc
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        raise ArtifactError(f"{origin}: manifest schema_version {version!r} is not supported (expected 1)")
    try:
        files = tuple(FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in raw["files"])
        return Manifest(
            cache_key=raw["cache_key"],
            name=raw["name"],
            task=raw["task"],
            backend=raw["backend"],
            precision=raw["precision"],
            variant=raw["variant"],
            inputs=raw["inputs"],
            versions=raw["versions"],
            files=files,
            cpu=raw.get("cpu"),  # absent from manifests written before it was recorded
            created=raw["created"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{origin}: manifest.json is missing or has a bad field: {exc}") from exc


def load_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{root}: no manifest.json, the artifact is incomplete or was never built")
    return parse_manifest(path.read_text(), str(root))


def verify_artifact(root: Path) -> Manifest:
    """Check every file the manifest lists; raise naming the first file that differs.

    Extra files are tolerated (a repository may gain Triton's own caches); missing,
    resized or altered ones are not.
    """
    manifest = load_manifest(root)
    for entry in manifest.files:
        path = root / entry.path
        if not path.is_file():
            raise ArtifactError(f"{root}: {entry.path} is listed in manifest.json but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise ArtifactError(f"{root}: {entry.path} has {size} bytes, manifest.json says {entry.size}")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise ArtifactError(
                f"{root}: {entry.path} sha256 {actual[:12]}… differs from the manifest's {entry.sha256[:12]}…"
            )
    return manifest


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Write manifest.json atomically (temp file + rename): readers never see half of it."""
    target = root / MANIFEST_NAME
    temporary = root / f".{MANIFEST_NAME}.tmp"
    temporary.write_text(manifest.to_json())
    temporary.replace(target)
    return target
