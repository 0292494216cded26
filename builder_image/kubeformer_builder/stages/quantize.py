"""int8 quantization variants with ONNX Runtime's quantizer, in the schemes the CPU runs best.

An `Int8Scheme` is one way to quantize: dynamic (activations quantized on the fly, u8) or static
QDQ calibrated on padded fixed-length samples; activation and weight types; per-channel weights;
reduce_range (7-bit weights); which ops. `schemes_for` lists the schemes worth trying on a CPU's
integer dot-product ISA (see isa.py for why): on VNNI, AMX and Arm dot product u8s8 at full range,
as Optimum's `AutoQuantizationConfig.avx512_vnni`/`arm64` and sentence-transformers'
`export_dynamic_quantized_onnx_model(model, "avx512_vnni")` use; on AVX2 and AVX-512 without VNNI,
where u8s8 saturates, 7-bit weights (reduce_range) and u8u8 (Optimum's `avx2`); where the flags
are unknown, both. The variant search times every scheme it lists and the gate judges each: the
fastest that passes ships. TensorRT wants static symmetric QDQ s8s8 with per-channel weights.
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
from kubeformer_builder.isa import Isa, has_int8_dot, saturates_u8s8

log = logging.getLogger("kubeformer.quantize")

GELU_OPS = {"Gelu", "BiasGelu", "FastGelu"}
# Ops the quantizer may turn int8; Gather/EmbedLayerNormalization shrink the embedding tables.
DYNAMIC_OPS = ("MatMul", "Attention", "EmbedLayerNormalization", "Gather")
_CALIBRATION_STRIDE = 4
STATIC_OPS = ("MatMul", "Attention", "Gather", "Add", "Mul", "Relu", "Softmax")
# TensorRT (explicit quantization): Q/DQ on the GEMM inputs only, where its int8 kernels are; the
# rest of the strongly typed network stays in the graph's float type.
TENSORRT_OPS = ("MatMul",)


@dataclass(frozen=True)
class Int8Scheme:
    """One int8 quantization recipe; `name` is the candidate name's suffix (`int8-<name>`)."""

    name: str
    static: bool  # calibrated QDQ; False: dynamic (activations quantized at run time)
    activations: str  # "u8" | "s8"
    weights: str  # "s8" | "u8"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: no int16 saturation on VPMADDUBSW
    ops: tuple[str, ...] = DYNAMIC_OPS

    @property
    def saturation_safe(self) -> bool:
        """Exact on CPUs whose u8 x s8 kernel saturates int16 (AVX2, AVX-512 without VNNI)."""
        return self.reduce_range or self.weights == "u8"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "mode": "static-qdq" if self.static else "dynamic",
            "activations": self.activations,
            "weights": self.weights,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "saturation_safe": self.saturation_safe,
            "ops": list(self.ops),
        }


DYNAMIC_U8S8 = Int8Scheme("dynamic", False, "u8", "s8")
# Embedding tables stay fp32: on MiniLM as fast (a lookup, not a GEMM) and closer to fp32.
DYNAMIC_U8S8_FP32_EMBEDDINGS = Int8Scheme("dynamic-fp32emb", False, "u8", "s8", ops=("MatMul", "Attention"))
DYNAMIC_U8S8_REDUCED = Int8Scheme("dynamic-rr", False, "u8", "s8", reduce_range=True)
DYNAMIC_U8U8 = Int8Scheme("dynamic-u8u8", False, "u8", "u8")
STATIC_U8S8 = Int8Scheme("static", True, "u8", "s8", ops=STATIC_OPS)
STATIC_U8S8_REDUCED = Int8Scheme("static-rr", True, "u8", "s8", reduce_range=True, ops=STATIC_OPS)
STATIC_S8S8 = Int8Scheme("static", True, "s8", "s8", ops=TENSORRT_OPS)  # symmetric: TensorRT


def schemes_for(isa: Isa, tensorrt: bool) -> tuple[Int8Scheme, ...]:
    """The int8 schemes worth building and timing on `isa`, cheapest to try first.

    TensorRT: static symmetric s8s8 only (explicit quantization). A CPU with an int8 dot product
    (VNNI, AMX, Arm dotprod) runs u8s8 at full range exactly: dynamic u8s8 with and without int8
    embedding tables (speed within noise of each other on MiniLM, accuracy not: benchmarks/builder),
    and static u8s8. One whose u8s8 kernel saturates (AVX2, AVX-512 without VNNI) gets 7-bit
    weights or u8 weights instead.
    Unknown flags (`baseline`): both families, the timing and the gate decide.
    """
    if tensorrt:
        return (STATIC_S8S8,)
    if has_int8_dot(isa) or isa is Isa.ARM64:  # Arm NEON widens to 16 bits first: no saturation
        return (DYNAMIC_U8S8, DYNAMIC_U8S8_FP32_EMBEDDINGS, STATIC_U8S8)
    if saturates_u8s8(isa):
        return (DYNAMIC_U8S8_REDUCED, DYNAMIC_U8U8, STATIC_U8S8_REDUCED)
    return (DYNAMIC_U8S8, DYNAMIC_U8S8_REDUCED, STATIC_U8S8)


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


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}[name]


def quantize_dynamic(
    source: Path, dest: Path, scheme: Int8Scheme = DYNAMIC_U8S8, exclude: Sequence[str] = ()
) -> Path:
    """`dest`/model.onnx: `source` with weights quantized as `scheme` says, activations at run time."""
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    if scheme.static or scheme.activations != "u8":
        raise ValueError(f"quantize_dynamic: scheme {scheme.name} is not dynamic u8 (ONNX Runtime's only)")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "model.onnx"
    ort_quantize_dynamic(
        str(source),
        str(target),
        weight_type=_quant_type(scheme.weights),
        per_channel=scheme.per_channel,
        reduce_range=scheme.reduce_range,
        op_types_to_quantize=list(scheme.ops),
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
    scheme: Int8Scheme = STATIC_U8S8,
    exclude: Sequence[str] = (),
) -> StaticResult:
    """QDQ static quantization as `scheme` says: u8s8 for CPU, s8s8 symmetric for TensorRT.

    Calibration runs here with ORT's own calibrator, so that activations holding inf/NaN can be
    left out of it (their nodes stay fp32); ORT then quantizes from the saved ranges.
    """
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import (
        QuantFormat,
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
    if not scheme.static:
        raise ValueError(f"quantize_static: scheme {scheme.name} is dynamic")
    symmetric_activations = scheme.activations == "s8"
    ops = list(scheme.ops)
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
        nonfinite = find_nonfinite(source, usable, ops, workdir)
        forced = _nodes_touching(source, nonfinite, ops)
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
            ops,
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
            activation_type=_quant_type(scheme.activations),
            weight_type=_quant_type(scheme.weights),
            per_channel=scheme.per_channel,
            reduce_range=scheme.reduce_range,
            op_types_to_quantize=ops,
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
