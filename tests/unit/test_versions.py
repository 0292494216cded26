"""One serving stack: the builder's TensorRT and CUDA, the Triton image and the operator agree with
versions.SERVING; the GPU probe tells a missing GPU from a driver too old for the CUDA runtime."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from kubeformer_builder.errors import BackendUnavailableError
from kubeformer_builder.versions import SERVING, missing_gpu_reason, probe_gpu, runtime_versions
from kubeformer_operator.config import Settings, load_settings
from tests.unit.test_images import DOCKERFILES, EXTRAS, extras_closure


def base_images(name: str) -> list[str]:
    return re.findall(r"^FROM (\S+)", DOCKERFILES[name].read_text(), re.M)


def test_pyproject_gpu_extra_pins_the_serving_tensorrt_and_cuda():
    gpu = EXTRAS["gpu"]
    assert SERVING.tensorrt_requirement in gpu
    assert SERVING.cuda_bindings_requirement in gpu
    tensorrt_wheels = [r for r in gpu if r.startswith("tensorrt")]
    assert tensorrt_wheels == [SERVING.tensorrt_requirement], "one TensorRT wheel, the serving one"


def test_gpu_install_has_one_onnxruntime():
    """onnxruntime-gpu beside onnxruntime: two packages writing the same module (issue 13, item 4)."""
    requirements = [r for extra in extras_closure({"gpu"}) for r in EXTRAS[extra]]
    runtimes = {re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in requirements if r.startswith("onnxruntime")}
    assert runtimes == {"onnxruntime"}
    assert not any(r.startswith("nvidia-modelopt") for r in requirements)


def test_builder_image_runs_on_the_serving_cuda():
    assert set(base_images("builder")) == {SERVING.cuda_image}


def test_triton_image_is_the_serving_release():
    assert base_images("triton") == [SERVING.triton_image]


def test_operator_knows_the_serving_tensorrt():
    assert Settings().triton_tensorrt == SERVING.tensorrt
    custom = load_settings({"KUBEFORMER_TRITON_TENSORRT_VERSION": "10.13.3.9"})
    assert custom.triton_tensorrt == "10.13.3.9"


def test_manifest_versions_name_the_triton_release():
    assert runtime_versions()["triton"] == SERVING.triton


@pytest.mark.parametrize(
    ("driver", "error", "count", "expected"),
    [
        (0, "cudaErrorInsufficientDriver", 0, "no NVIDIA driver"),
        (11080, "cudaErrorInsufficientDriver", 0, "the NVIDIA driver supports CUDA 11.8, older than"),
        (12090, "cudaErrorNoDevice", 0, "sees no GPU"),
        (12090, None, 0, "sees no GPU"),
        (12090, "cudaErrorUnknown", 0, "cannot list the GPUs (cudaErrorUnknown"),
    ],
)
def test_missing_gpu_reason_tells_the_driver_from_the_device(driver, error, count, expected):
    reason = missing_gpu_reason(driver, error, count)
    assert expected in reason
    if "older" in reason:
        assert SERVING.min_driver in reason


def test_a_gpu_with_a_fitting_driver_is_fine():
    assert missing_gpu_reason(12090, None, 1) is None
    assert missing_gpu_reason(13000, None, 2) is None


class FakeCudart:
    """cuda.bindings.runtime's calling convention: (error, value) tuples."""

    cudaError_t = SimpleNamespace(cudaSuccess=0)

    def __init__(self, driver: int, count_error: int, count: int, name: bytes = b"NVIDIA H200") -> None:
        self.driver, self.count_error, self.count, self.name = driver, count_error, count, name

    def cudaDriverGetVersion(self):
        return 0, self.driver

    def cudaGetDeviceCount(self):
        return self.count_error, self.count

    def cudaGetErrorName(self, error):
        return 0, {35: b"cudaErrorInsufficientDriver", 100: b"cudaErrorNoDevice"}[error]

    def cudaGetDeviceProperties(self, device):
        return 0, SimpleNamespace(name=self.name, major=9, minor=0)


def test_probe_reports_product_and_architecture():
    gpu = probe_gpu(FakeCudart(12090, 0, 1))
    assert (gpu.product, gpu.arch) == ("NVIDIA H200", "sm_90")


@pytest.mark.parametrize(
    ("cudart", "message"),
    [(FakeCudart(12020, 100, 0), "sees no GPU"), (FakeCudart(11040, 35, 0), "supports CUDA 11.4")],
)
def test_probe_refuses_with_the_cause(cudart, message):
    with pytest.raises(BackendUnavailableError, match=re.escape(message)):
        probe_gpu(cudart)
