"""Fetch an artifact into a directory and verify every file: the Triton pods' init container step."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from kubeformer_builder.errors import ArtifactError
from kubeformer_builder.isa import CpuInfo, host_cpu, serving_mismatch
from kubeformer_builder.manifest import Manifest, verify_artifact

log = logging.getLogger("kubeformer.fetch")


def cpu_warning(manifest: Manifest, serving: CpuInfo) -> str | None:
    """Why `serving` may not run the artifact as its build measured it (isa.serving_mismatch), or None.

    Artifacts without a `cpu` block (TensorRT, or written before it was recorded) are not judged.
    """
    built = manifest.cpu
    if not built or not built.get("isa"):
        return None
    scheme = built.get("int8_scheme")
    safe = scheme is None or bool(scheme.get("saturation_safe"))
    return serving_mismatch(built["isa"], serving.isa, safe)


def check_cpu(manifest: Manifest, origin: str) -> None:
    """Log a warning when this machine's CPU differs from the build CPU in what int8 relies on."""
    warning = cpu_warning(manifest, host_cpu())
    if warning:
        log.warning("%s: %s", origin, warning)


def fetch_artifact_to(source: str, dest: Path, s3_endpoint: str | None, replace: bool = False) -> Manifest:
    """Download (s3://) or copy (a directory or file://) `source` into `dest`, then verify it there.

    Verification runs on the fetched copy, the bytes Triton will read; a bad file raises ArtifactError
    naming it. `replace`: `dest` is this fetch's own directory and whatever an earlier attempt left
    there goes first (an init container restarted after S3 failed mid-download finds its files).
    """
    if dest.exists() and any(dest.iterdir()):
        if not replace:
            raise ArtifactError(f"{dest}: destination is not empty; fetch into a new or empty directory")
        shutil.rmtree(dest)
    if source.startswith("s3://"):
        from kubeformer_builder.storage import download_prefix  # boto3 only when S3 is used

        download_prefix(source, dest, s3_endpoint)
    else:
        local = Path(source.removeprefix("file://"))
        if not local.is_dir():
            raise ArtifactError(f"{source}: no such artifact directory")
        shutil.copytree(local, dest, dirs_exist_ok=True)
    manifest = verify_artifact(dest)
    check_cpu(manifest, source)
    return manifest
