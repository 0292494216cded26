"""Compile ONNX into a strongly typed TensorRT engine (GPU only) and run engines for the accuracy gate.

Strongly typed networks (TensorRT 10; the only kind in TensorRT 11, which removed
BuilderFlag.FP16/INT8) take every tensor's precision from the graph: an fp16 engine is built
from the mixed-precision fp16 ONNX (stages/fp16.py), an int8 engine from the Q/DQ ONNX
(stages/quantize.py, explicit quantization: the Q/DQ scales decide, no calibrator), fp32 from the
exported graph. No precision flag is set. The engine gets one optimization profile from `shapes`
(batch and sequence min/opt/max); a batch outside it is refused with the profile in the message.
The ONNX given here holds standard ops only: TensorRT cannot parse ONNX Runtime's fused contrib
ops, and does its own fusion. Device memory goes through the CUDA runtime bindings of the serving
stack's CUDA (versions.SERVING), not torch, whose wheels follow another CUDA.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from kubeformer_builder.config import Shapes
from kubeformer_builder.errors import BackendUnavailableError, KubeformerError

_WORKSPACE_BYTES = 4 << 30


def _trt():
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(f"optimization.backend: tensorrt is not installed: {exc}") from exc
    return tensorrt


def build_engine(onnx_path: Path, dest: Path, shapes: Shapes, input_names) -> Path:
    """dest/model.plan from `onnx_path`, in the precisions its graph holds; KubeformerError on failure."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise KubeformerError(f"tensorrt: cannot parse {onnx_path.parent.name}/{onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    batch, sequence = shapes.batch, shapes.sequence
    for name in input_names:
        profile.set_shape(
            name, (batch.min, sequence.min), (batch.opt, sequence.opt), (batch.max, sequence.max)
        )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise KubeformerError(
            f"tensorrt: building the engine of {onnx_path.parent.name} failed (see the log)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    plan = dest / "model.plan"
    plan.write_bytes(bytes(serialized))
    return plan


def _cuda(result):
    """The value of a cuda.bindings call `(error, *values)`; KubeformerError naming a CUDA error."""
    from cuda.bindings import runtime as cudart

    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        raise KubeformerError(f"tensorrt: CUDA call failed: {cudart.cudaGetErrorName(error)[1]}")
    return values[0] if len(values) == 1 else None


class _DeviceBuffer:
    """Device memory that grows to the largest tensor it has held, reused between batches."""

    def __init__(self) -> None:
        self.pointer, self.capacity = 0, 0

    def fit(self, nbytes: int) -> int:
        from cuda.bindings import runtime as cudart

        if nbytes > self.capacity:
            self.free()
            self.pointer, self.capacity = _cuda(cudart.cudaMalloc(max(nbytes, 1))), nbytes
        return self.pointer

    def free(self) -> None:
        from cuda.bindings import runtime as cudart

        if self.pointer:
            _cuda(cudart.cudaFree(self.pointer))
        self.pointer, self.capacity = 0, 0


def _release(buffers: list[_DeviceBuffer], stream) -> None:
    from cuda.bindings import runtime as cudart

    for buffer in buffers:
        buffer.free()
    cudart.cudaStreamDestroy(stream)


class EngineRunner:
    """Runs a serialized engine: numpy batches in, numpy outputs (float32) out in engine order.

    Raises KubeformerError when a batch's shape lies outside the engine's profile: a gate that
    quietly ran other shapes than the served ones would judge something else.
    """

    def __init__(self, plan: Path):
        from cuda.bindings import runtime as cudart

        trt = _trt()
        self.trt = trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise KubeformerError(f"tensorrt: {plan} does not load in TensorRT {trt.__version__}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.buffers = {name: _DeviceBuffer() for name in names}
        self.stream = _cuda(cudart.cudaStreamCreate())
        # The search builds many engines: each runner's device memory goes when the runner does.
        weakref.finalize(self, _release, list(self.buffers.values()), self.stream)

    def profile(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(min, max) shape the engine accepts for input `name`."""
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(low), tuple(high)

    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        from cuda.bindings import runtime as cudart

        for name in self.inputs:
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.ascontiguousarray(batch[name], dtype=dtype)
            if not self.context.set_input_shape(name, host.shape):
                low, high = self.profile(name)
                raise KubeformerError(
                    f"tensorrt: the engine refuses {name} of shape {host.shape}: its profile accepts "
                    f"{low} to {high} (optimization.shapes)"
                )
            device = self.buffers[name].fit(host.nbytes)
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _cuda(cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind, self.stream))
            self.context.set_tensor_address(name, device)
        results = []
        for name in self.outputs:
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype)
            results.append(host)
            self.context.set_tensor_address(name, self.buffers[name].fit(host.nbytes))
        if not self.context.execute_async_v3(int(self.stream)):
            raise KubeformerError("tensorrt: engine execution failed (see the log)")
        kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, host in zip(self.outputs, results, strict=True):
            pointer = self.buffers[name].pointer
            _cuda(cudart.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind, self.stream))
        _cuda(cudart.cudaStreamSynchronize(self.stream))
        return tuple(result.astype(np.float32, copy=False) for result in results)
