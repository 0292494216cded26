"""Versions of the runtimes a build used, and the TensorRT target (GPU architecture, version)."""

from __future__ import annotations

from importlib import metadata

from kubeformer_builder import __version__
from kubeformer_builder.errors import BackendUnavailableError


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def runtime_versions() -> dict[str, str | None]:
    return {
        "kubeformer": __version__,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "gpu_arch": None,
        "tensorrt": None,
    }


def tensorrt_target() -> tuple[str, str]:
    """(compute capability like 'sm_90', TensorRT version) of this machine, or a clear refusal."""
    try:
        import tensorrt
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "optimization.backend: tensorrt needs the TensorRT Python package (install kubeformer[gpu]) "
            f"and a CUDA GPU: {exc}"
        ) from exc
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "optimization.backend: tensorrt needs a CUDA GPU and this machine has none"
        )
    major, minor = torch.cuda.get_device_capability(0)
    return f"sm_{major}{minor}", tensorrt.__version__
