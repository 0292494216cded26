"""The pinned serving stack, the versions of the runtimes a build used, and the GPU a TensorRT build targets.

`SERVING` is the one place that names the Triton release, and with it what that release ships:
TensorRT, CUDA and ONNX Runtime. A TensorRT plan loads only in the TensorRT version that built it,
so the builder's `tensorrt-cu12` wheel, the builder image's CUDA base, the Triton image and the
operator's version check all follow `SERVING`; tests/unit/test_versions.py fails when
pyproject.toml or a Dockerfile disagrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from kubeformer_builder import __version__
from kubeformer_builder.errors import BackendUnavailableError


@dataclass(frozen=True)
class ServingStack:
    """An NGC Triton release and the runtimes inside it (from its release notes and support matrix)."""

    triton: str  # NGC release, e.g. "25.06"
    tensorrt: str  # TensorRT in that image; the builder's wheel must be the same version
    cuda: str  # CUDA toolkit of the image
    onnxruntime: str  # ONNX Runtime of Triton's onnxruntime backend
    min_driver: str  # the driver release that CUDA version needs (data-center GPUs: see docs/install.md)

    @property
    def cuda_major(self) -> int:
        return int(self.cuda.split(".")[0])

    @property
    def triton_image(self) -> str:
        return f"nvcr.io/nvidia/tritonserver:{self.triton}-py3"

    @property
    def cuda_image(self) -> str:
        """The builder image's base: the same CUDA as Triton, so one driver serves both."""
        return f"nvcr.io/nvidia/cuda:{self.cuda}-cudnn-runtime-ubuntu24.04"

    @property
    def tensorrt_requirement(self) -> str:
        return f"tensorrt-cu{self.cuda_major}=={self.tensorrt}"

    @property
    def cuda_bindings_requirement(self) -> str:
        """CUDA runtime bindings of the same CUDA major (minor version compatibility covers the rest)."""
        major, minor = self.cuda.split(".")[:2]
        return f"cuda-bindings>={major}.{minor},<{self.cuda_major + 1}"


# Triton 25.06 is the last release on CUDA 12 (25.08 moved to CUDA 13): CUDA 12.9.1, TensorRT
# 10.11.0.33 (PyPI has tensorrt-cu12==10.11.0.33), ONNX Runtime 1.22.0; CUDA 12.9 needs driver R575
# (575.57.08), data-center GPUs also run it on R535/R545 through the image's forward compatibility.
SERVING = ServingStack(
    triton="25.06", tensorrt="10.11.0.33", cuda="12.9.1", onnxruntime="1.22.0", min_driver="575.57.08"
)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def runtime_versions() -> dict[str, str | None]:
    """What this build ran with, and the Triton release its artifact is made for."""
    return {
        "kubeformer": __version__,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "triton": SERVING.triton,
        "gpu_arch": None,
        "gpu_product": None,
        "tensorrt": None,
    }


@dataclass(frozen=True)
class Gpu:
    """The build's GPU as TensorRT targets it and as GPU feature discovery labels its node."""

    product: str  # the device name, e.g. "NVIDIA H200"
    major: int
    minor: int

    @property
    def arch(self) -> str:
        return f"sm_{self.major}{self.minor}"


def missing_gpu_reason(driver_cuda: int, count_error: str | None, count: int) -> str | None:
    """Why this machine cannot run the builder's CUDA runtime, or None when it can.

    `driver_cuda` is cudaDriverGetVersion's answer (1000 * major + 10 * minor, 0 without a driver),
    `count_error` the error name cudaGetDeviceCount returned (None on success) and `count` its count.
    """
    needed = SERVING.cuda_major * 1000
    if driver_cuda <= 0:
        return "no NVIDIA driver is loaded (no GPU here, or the container runs without the NVIDIA runtime)"
    driver = f"{driver_cuda // 1000}.{driver_cuda % 1000 // 10}"
    if driver_cuda < needed or count_error == "cudaErrorInsufficientDriver":
        return (
            f"the NVIDIA driver supports CUDA {driver}, older than the CUDA {SERVING.cuda_major}.x runtime "
            f"of TensorRT {SERVING.tensorrt}: upgrade the driver (Triton {SERVING.triton} needs "
            f">= {SERVING.min_driver})"
        )
    if count_error == "cudaErrorNoDevice" or (count_error is None and count == 0):
        return f"the NVIDIA driver (CUDA {driver}) is loaded but sees no GPU: give the pod an nvidia.com/gpu"
    if count_error is not None:
        return f"CUDA cannot list the GPUs ({count_error}, driver for CUDA {driver})"
    return None


def _cudart():
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        raise BackendUnavailableError(
            f"optimization.backend: tensorrt needs the CUDA runtime bindings (install kubeformer[gpu]): {exc}"
        ) from exc
    return runtime


def probe_gpu(cudart=None) -> Gpu:
    """GPU 0 of this machine; BackendUnavailableError saying whether the GPU or the driver is missing."""
    cudart = cudart or _cudart()
    error, driver = cudart.cudaDriverGetVersion()
    driver = driver if error == cudart.cudaError_t.cudaSuccess else 0
    error, count = cudart.cudaGetDeviceCount()
    count_error = None if error == cudart.cudaError_t.cudaSuccess else cudart.cudaGetErrorName(error)[1]
    if isinstance(count_error, bytes):
        count_error = count_error.decode()
    reason = missing_gpu_reason(driver, count_error, count)
    if reason:
        raise BackendUnavailableError(f"optimization.backend: tensorrt needs a CUDA GPU: {reason}")
    error, properties = cudart.cudaGetDeviceProperties(0)
    name = properties.name.decode() if isinstance(properties.name, bytes) else str(properties.name)
    return Gpu(product=name.rstrip("\x00").strip(), major=properties.major, minor=properties.minor)


def tensorrt_target() -> tuple[Gpu, str]:
    """(GPU 0, TensorRT version) of this machine, or a clear refusal.

    The installed TensorRT must be the serving stack's: a plan loads only in the version that built it.
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            "optimization.backend: tensorrt needs the TensorRT Python package (install kubeformer[gpu]) "
            f"and a CUDA GPU: {exc}"
        ) from exc
    if tensorrt.__version__ != SERVING.tensorrt:
        raise BackendUnavailableError(
            f"optimization.backend: TensorRT {tensorrt.__version__} is installed but Triton {SERVING.triton} "
            f"serves TensorRT {SERVING.tensorrt}; install {SERVING.tensorrt_requirement} (kubeformer[gpu])"
        )
    return probe_gpu(), tensorrt.__version__


def tensorrt_versions(gpu: Gpu, tensorrt_version: str) -> dict[str, str]:
    """What a TensorRT manifest records: the engine's GPU (for placement) and TensorRT (for serving)."""
    return {"gpu_arch": gpu.arch, "gpu_product": gpu.product, "tensorrt": tensorrt_version}
