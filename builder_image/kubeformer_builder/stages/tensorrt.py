"""Compile ONNX into a TensorRT engine (GPU only) and run engines for the accuracy gate.

The engine gets one optimization profile from `shapes` (batch and sequence min/opt/max).
fp16 engines are built from the fp32 ONNX with the FP16 flag; int8 engines from the static
symmetric QDQ ONNX (explicit quantization: the QDQ scales decide, no TensorRT calibrator).
The ONNX given here holds standard ops only: TensorRT cannot parse ONNX Runtime's fused
contrib ops, and does its own fusion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kubeformer_builder.config import Precision, Shapes
from kubeformer_builder.errors import BackendUnavailableError, KubeformerError

_WORKSPACE_BYTES = 4 << 30


def _trt():
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(f"optimization.backend: tensorrt is not installed: {exc}") from exc
    return tensorrt


def build_engine(onnx_path: Path, dest: Path, shapes: Shapes, precision: Precision, input_names) -> Path:
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise KubeformerError(f"tensorrt: cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _WORKSPACE_BYTES)
    if precision in (Precision.FP16, Precision.INT8):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 engines keep fp16 for what stays unquantized
    if precision is Precision.INT8:
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    batch, sequence = shapes.batch, shapes.sequence
    for name in input_names:
        profile.set_shape(
            name, (batch.min, sequence.min), (batch.opt, sequence.opt), (batch.max, sequence.max)
        )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise KubeformerError(f"tensorrt: building the {precision.value} engine failed (see the log above)")
    dest.mkdir(parents=True, exist_ok=True)
    plan = dest / "model.plan"
    plan.write_bytes(bytes(serialized))
    return plan


class EngineRunner:
    """Runs a serialized engine on CUDA tensors; outputs come back as numpy in engine order."""

    def __init__(self, plan: Path):
        import torch

        trt = _trt()
        self._torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(plan.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()

    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        torch = self._torch
        keep = []
        for name in self.inputs:
            tensor = torch.from_numpy(np.ascontiguousarray(batch[name])).to("cuda", dtype=torch.int64)
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            output = torch.empty(shape, dtype=torch.float32, device="cuda")
            results.append(output)
            self.context.set_tensor_address(name, output.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise KubeformerError("tensorrt: engine execution failed")
        self.stream.synchronize()
        return tuple(result.cpu().numpy() for result in results)
