"""`kubeformer serve`: verify an artifact, stage a private copy with serving overrides, run Triton
and, beside it, the client API front (serving/api) on its own port.

Order matters: every sha256 is checked before Triton sees a byte, so a corrupt or half-uploaded
artifact is refused with the name of the bad file instead of failing somewhere inside Triton.
The copy (hard links where possible) keeps the original untouched by the overrides.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from kubeformer_builder.errors import ArtifactError
from kubeformer_builder.manifest import REPOSITORY_DIR, verify_artifact
from kubeformer_builder.serving.api.server import ApiServer
from kubeformer_builder.serving.api.settings import ApiSettings, Listen
from kubeformer_builder.serving.fetch import check_cpu, fetch_artifact_to
from kubeformer_builder.serving.overrides import Overrides, apply_overrides, has_gpu
from kubeformer_builder.serving.tritonserver import Endpoints, TritonServer


@dataclass(frozen=True)
class ServeConfig:
    sources: tuple[str, ...]  # artifact directories (or file:// URIs) and s3:// prefixes
    endpoints: Endpoints = field(default_factory=Endpoints)
    overrides: Overrides = field(default_factory=Overrides)
    s3_endpoint: str | None = None
    api: Listen | None = None  # where the API front listens; None: no front
    api_settings: ApiSettings = field(default_factory=ApiSettings)  # its Triton URL is set by serve()


def verified_artifact(source: str, download_dir: Path, s3_endpoint: str | None) -> Path:
    """The local, verified directory of an artifact: `source` itself, or its download."""
    if source.startswith("s3://"):
        fetch_artifact_to(source, download_dir, s3_endpoint)
        return download_dir
    path = Path(source.removeprefix("file://"))
    if not path.is_dir():
        raise ArtifactError(f"{source}: no such artifact directory")
    check_cpu(verify_artifact(path), source)
    return path


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: copy instead
        shutil.copy2(source, target)


def stage_repository(artifact: Path, dest: Path, overrides: Overrides, gpu: bool) -> Path:
    """Copy a verified `artifact` to `dest`, apply the overrides there; returns the model repository."""
    shutil.copytree(artifact, dest, copy_function=_link_or_copy)
    repository = dest / REPOSITORY_DIR
    if not repository.is_dir():
        raise ArtifactError(f"{artifact}: has no {REPOSITORY_DIR}/ directory")
    # The local Triton (nvidia-pytriton) has no native onnxruntime backend: ours serves, ragged batches on.
    apply_overrides(repository, overrides, gpu, ragged=True)
    return repository


def serve(
    config: ServeConfig,
    stop: threading.Event,
    log: Callable[[str], None],
    on_ready: Callable[[Endpoints], None],
) -> None:
    """Serve until `stop` is set; raises if Triton fails to start or dies while serving."""
    gpu = has_gpu()
    with tempfile.TemporaryDirectory(prefix="kubeformer-serve-") as temporary:
        workdir = Path(temporary)
        repositories = []
        for index, source in enumerate(config.sources):
            artifact = verified_artifact(source, workdir / f"download-{index}", config.s3_endpoint)
            repositories.append(
                stage_repository(artifact, workdir / f"artifact-{index}", config.overrides, gpu)
            )
        with (
            TritonServer(repositories, workdir / "triton", config.endpoints, log) as server,
            _api_front(config, tuple(repositories)) as front,
        ):
            on_ready(config.endpoints)
            while not stop.wait(1.0):
                server.check_alive()
                if front is not None:
                    front.check_alive()


def _api_front(config: ServeConfig, repositories: tuple[Path, ...]):
    """The front, talking to this Triton over loopback gRPC, or nothing when it is disabled."""
    if config.api is None:
        return nullcontext()
    host = "127.0.0.1" if config.endpoints.host in ("0.0.0.0", "") else config.endpoints.host
    settings = dataclasses.replace(
        config.api_settings,
        triton_url=f"grpc://{host}:{config.endpoints.grpc_port}",
        repositories=repositories,
    )
    return ApiServer(settings, config.api)
