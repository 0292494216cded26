"""int8 quantization variants with ONNX Runtime's quantizer.

CPU serving (onnxruntime backend) tries two variants and keeps the faster one that passes
the gate: dynamic int8 (weights per-channel s8, activations quantized on the fly, fused
Attention/EmbedLayerNorm quantized too) and static QDQ u8s8 calibrated on padded
fixed-length samples. TensorRT wants static symmetric QDQ s8s8 with per-channel weights.
Nodes that hurt accuracy most can be left in fp32 (`exclude`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from kubeformer_builder.config import CalibrationMethod

GELU_OPS = {"Gelu", "BiasGelu", "FastGelu"}
# Ops the quantizer may turn int8; Gather/EmbedLayerNormalization shrink the embedding tables.
DYNAMIC_OPS = ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"]
_CALIBRATION_STRIDE = 4
STATIC_OPS = ["MatMul", "Attention", "Gather", "Add", "Mul", "Relu", "Softmax"]
# TensorRT (explicit quantization): Q/DQ on the GEMM inputs only, where its int8 kernels are; the
# rest of the strongly typed network stays in the graph's float type.
TENSORRT_OPS = ["MatMul"]


def quantizable_nodes(model_path: Path) -> list[str]:
    """Names of the weight-carrying compute nodes, in graph order: the candidates to keep fp32."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type in ("MatMul", "Attention") and any(name in initializers for name in node.input)
    ]


def ffn_output_matmuls(model_path: Path) -> list[str]:
    """MatMuls fed by a Gelu: the FFN output projections, the usual int8-sensitive layers."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    producers = {output: node for node in graph.node for output in node.output}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and any(producers.get(i) and producers[i].op_type in GELU_OPS for i in node.input)
    ]


def quantize_dynamic(source: Path, dest: Path, exclude: Sequence[str] = ()) -> Path:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "model.onnx"
    ort_quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=DYNAMIC_OPS,
        nodes_to_exclude=list(exclude),
        # Fused contrib ops defeat shape inference; their outputs are fp32.
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return target


class PaddedReader:
    """CalibrationDataReader over fixed-length batches (percentile/entropy need equal shapes).

    Supports ORT's strided collection (`__len__`, `set_range`), which folds activations into
    the histograms a few batches at a time instead of holding all of them in memory.
    """

    def __init__(self, batches: Sequence[dict[str, np.ndarray]]):
        self._batches = list(batches)
        self._iterator: Iterator[dict[str, np.ndarray]] = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iterator = iter(self._batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)


def quantize_static(
    source: Path,
    dest: Path,
    calibration: Sequence[dict[str, np.ndarray]],
    method: CalibrationMethod,
    symmetric_activations: bool = False,
    exclude: Sequence[str] = (),
    op_types: Sequence[str] = tuple(STATIC_OPS),
) -> Path:
    """QDQ static quantization: u8 activations / s8 weights for CPU, s8/s8 symmetric for TensorRT."""
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    methods = {
        CalibrationMethod.MAX: OrtMethod.MinMax,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
    }
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "model.onnx"
    # ORT collects `stride` batches at a time and insists the count divides evenly.
    stride = min(_CALIBRATION_STRIDE, len(calibration))
    usable = list(calibration)[: len(calibration) - len(calibration) % stride]
    # ORT's calibrators print progress with print(): keep stdout for the build's JSON result.
    with contextlib.redirect_stdout(sys.stderr):
        ort_quantize_static(
            str(source),
            str(target),
            PaddedReader(usable),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=list(exclude),
            calibrate_method=methods[method],
            extra_options={
                "ActivationSymmetric": symmetric_activations,
                "WeightSymmetric": True,
                "CalibMovingAverage": method is CalibrationMethod.MAX,
                # Bounded memory on large models: activations are collected four batches at a time
                # (the option's name says MinMax, ORT applies it to every calibration method).
                "CalibStridedMinMax": stride,
                "CalibPercentile": 99.99,
                "DefaultTensorType": onnx.TensorProto.FLOAT,
            },
        )
    return target
