"""int8 quantization variants with ONNX Runtime's quantizer.

CPU serving (onnxruntime backend) tries two variants and keeps the faster one that passes
the gate: dynamic int8 (weights per-channel s8, activations quantized on the fly, fused
Attention/EmbedLayerNorm quantized too) and static QDQ u8s8 calibrated on padded
fixed-length samples. TensorRT wants static symmetric QDQ s8s8 with per-channel weights.
Nodes that hurt accuracy most can be left in fp32 (`exclude`).

Static calibration copes with activations that hold inf or NaN (MPNet's relative-position
bucketing takes the log of zero): those tensors are left out of calibration and the nodes that
read or write them stay fp32; the result names them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from kubeformer_builder.config import CalibrationMethod

log = logging.getLogger("kubeformer.quantize")

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


@dataclass(frozen=True)
class StaticResult:
    """A statically quantized model and what calibration had to leave in fp32."""

    path: Path
    nonfinite_tensors: tuple[str, ...]  # activations holding inf/NaN on some calibration batch
    fp32_nodes: tuple[str, ...]  # nodes kept fp32 because they read or write one of them


def calibrated_tensors(model: onnx.ModelProto, op_types: Sequence[str]) -> list[str]:
    """Float activations read or written by `op_types` nodes, in graph order: what ORT calibrates."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    floats = {
        info.name
        for info in (*graph.value_info, *graph.output, *graph.input)
        if info.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    names = (name for node in graph.node if node.op_type in op_types for name in (*node.input, *node.output))
    return list(dict.fromkeys(n for n in names if n in floats and n not in initializers))


def find_nonfinite(
    source: Path, calibration: Sequence[dict[str, np.ndarray]], op_types: Sequence[str], workdir: Path
) -> tuple[str, ...]:
    """The calibrated activations that hold inf or NaN on any calibration batch, in graph order."""
    import onnxruntime as ort
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    model = load_model_with_shape_infer(source)
    watched = calibrated_tensors(model, op_types)
    infos = {info.name: info for info in (*model.graph.value_info, *model.graph.input)}
    outputs = {output.name for output in model.graph.output}
    model.graph.output.extend(infos[name] for name in watched if name not in outputs)
    probe = workdir / "probe.onnx"
    onnx.save_model(model, str(probe), save_as_external_data=True, location="probe.onnx.data")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    session = ort.InferenceSession(str(probe), options, providers=["CPUExecutionProvider"])
    takes = {i.name for i in session.get_inputs()}
    bad: set[str] = set()
    for batch in calibration:
        values = session.run(watched, {k: v for k, v in batch.items() if k in takes})
        bad.update(name for name, value in zip(watched, values, strict=True) if not np.isfinite(value).all())
    return tuple(name for name in watched if name in bad)


def _nodes_touching(model_path: Path, tensors: Sequence[str], op_types: Sequence[str]) -> tuple[str, ...]:
    graph = onnx.load(str(model_path), load_external_data=False).graph
    wanted = set(tensors)
    return tuple(
        node.name
        for node in graph.node
        if node.op_type in op_types and wanted.intersection((*node.input, *node.output))
    )


def quantize_static(
    source: Path,
    dest: Path,
    calibration: Sequence[dict[str, np.ndarray]],
    method: CalibrationMethod,
    symmetric_activations: bool = False,
    exclude: Sequence[str] = (),
    op_types: Sequence[str] = tuple(STATIC_OPS),
) -> StaticResult:
    """QDQ static quantization: u8 activations / s8 weights for CPU, s8/s8 symmetric for TensorRT.

    Calibration runs here with ORT's own calibrator, so that activations holding inf/NaN can be
    left out of it (their nodes stay fp32); ORT then quantizes from the saved ranges.
    """
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        TensorsData,
        create_calibrator,
        save_tensors_data,
    )
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
    reader = PaddedReader(usable)
    # ORT's calibrators print progress with print(): keep stdout for the build's JSON result.
    with (
        tempfile.TemporaryDirectory(prefix="kubeformer-calibration-") as scratch,
        contextlib.redirect_stdout(sys.stderr),
    ):
        workdir = Path(scratch)
        nonfinite = find_nonfinite(source, usable, op_types, workdir)
        forced = _nodes_touching(source, nonfinite, op_types)
        if nonfinite:
            log.warning(
                "calibration: %d activations hold inf/NaN (%s); left out, %d nodes reading or writing "
                "them stay fp32",
                len(nonfinite),
                ", ".join(nonfinite[:5]) + (", ..." if len(nonfinite) > 5 else ""),
                len(forced),
            )
        calibrator = create_calibrator(
            source,
            list(op_types),
            augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=methods[method],
            use_external_data_format=True,
            extra_options={"moving_average": method is CalibrationMethod.MAX, "percentile": 99.99},
        )
        # ORT 1.31's histogram calibrators (percentile, entropy) collect exactly `tensors_to_calibrate`
        # and fail on a non-finite one; the min/max calibrator only records inf ranges, dropped below.
        if getattr(calibrator, "tensors_to_calibrate", None) is not None:
            calibrator.tensors_to_calibrate -= set(nonfinite)
        # Bounded memory on large models: activations are collected `stride` batches at a time.
        for start in range(0, len(usable), stride):
            reader.set_range(start, start + stride)
            calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        kept = {name: data for name, data in ranges.items() if name not in nonfinite}
        cache = workdir / "ranges.json"
        save_tensors_data(TensorsData(ranges.calibration_method, kept), cache)
        del calibrator
        ort_quantize_static(
            str(source),
            str(target),
            None,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=list(dict.fromkeys((*exclude, *forced))),
            calibrate_method=methods[method],
            calibration_cache_path=str(cache),
            extra_options={
                "ActivationSymmetric": symmetric_activations,
                "WeightSymmetric": True,
                "DefaultTensorType": onnx.TensorProto.FLOAT,
            },
        )
    return StaticResult(target, nonfinite, forced)
