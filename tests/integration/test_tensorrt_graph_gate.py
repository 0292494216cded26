"""TensorRT variants judged without a GPU: the strongly typed fp16 and Q/DQ graphs a TensorRT engine is
built from, gated on the CPU with ONNX Runtime, on shapes the engine's profile would accept."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from kubeformer_builder.config import Precision, Task
from kubeformer_builder.isa import host_cpu
from kubeformer_builder.pipeline import prepare
from kubeformer_builder.variants import VariantSearch
from tests.fixtures.builds import tiny_config

FLOAT16 = onnx.TensorProto.FLOAT16


def graph_search(tiny_model, tmp_path: Path, precision: str, **overrides) -> list:
    task = Task.FEATURE_EXTRACTION
    config = tiny_config(tiny_model("bert", task), task, backend="tensorrt", precision=precision, **overrides)
    prepared = prepare(config, tmp_path, {})
    search = VariantSearch(
        config,
        prepared.evaluator,
        prepared.fused,
        tmp_path / "variants",
        prepared.calibration,
        host_cpu().isa,  # TensorRT's int8 scheme does not depend on it
        engines=False,
    )
    return search.run()


def node_types(path: Path) -> dict[str, int]:
    """Elem type of every node's first output (value_info after shape inference)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    return {node.op_type + ":" + node.name: types.get(node.output[0]) for node in model.graph.node}


def test_fp16_graph_keeps_layernorm_and_softmax_fp32_and_is_gated_on_cpu(tiny_model, tmp_path):
    (candidate,) = graph_search(tiny_model, tmp_path, "fp16")
    assert candidate.precision is Precision.FP16 and candidate.engine is None
    assert candidate.graph_gate is not None and candidate.gate is candidate.graph_gate
    assert candidate.graph_gate.passed, candidate.graph_gate.to_dict()
    types = node_types(candidate.path)
    matmuls = [t for name, t in types.items() if name.startswith("MatMul:")]
    assert matmuls and all(t == FLOAT16 for t in matmuls), "the GEMMs run in fp16"
    kept = [t for name, t in types.items() if name.split(":")[0] in ("LayerNormalization", "Softmax")]
    assert kept and all(t == onnx.TensorProto.FLOAT for t in kept)
    model = onnx.load(str(candidate.path))
    assert {i.type.tensor_type.elem_type for i in model.graph.output} == {onnx.TensorProto.FLOAT}


def test_int8_graph_is_symmetric_qdq_on_gemms_and_gated_on_cpu(tiny_model, tmp_path):
    candidates = graph_search(tiny_model, tmp_path, "int8")
    assert candidates and all(c.engine is None and c.graph_gate is not None for c in candidates)
    first = candidates[0]
    assert first.name == "int8-static"  # TensorRT takes explicit, static Q/DQ only
    model = onnx.load(str(first.path))
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["QuantizeLinear"] and ops["DequantizeLinear"]
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [
        initializers[node.input[2]] for node in model.graph.node if node.op_type == "QuantizeLinear"
    ]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    weights = {
        node.output[0]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers
    }
    weighted = {node.op_type for node in model.graph.node if weights & set(node.input)}
    assert weighted == {"MatMul"}, "int8 weights only where TensorRT has int8 GEMMs"
    # Every candidate reports what it costs in accuracy on the graph, passed or not.
    assert all(0 <= c.graph_gate.drop <= 1 for c in candidates)


def test_auto_on_tensorrt_tries_fp16_and_int8(tiny_model, tmp_path):
    tried = graph_search(tiny_model, tmp_path, "auto")
    precisions = {c.precision for c in tried}
    assert {Precision.FP32, Precision.FP16, Precision.INT8} <= precisions


@pytest.mark.parametrize(("batch_max", "sequence_min"), [(2, 24), (4, 1)])
def test_gate_batches_fit_the_engine_profile(tiny_model, tmp_path, batch_max, sequence_min):
    task = Task.TEXT_CLASSIFICATION
    config = tiny_config(
        tiny_model("bert", task),
        task,
        backend="tensorrt",
        batch=(1, 1, batch_max),
        sequence=(sequence_min, 32, 64),
    )
    evaluator = prepare(config, tmp_path, {}).evaluator
    for batch in evaluator.held_out:
        rows, width = batch["input_ids"].shape
        assert rows <= batch_max and sequence_min <= width <= 64
        assert {name: values.shape for name, values in batch.items()} == dict.fromkeys(batch, (rows, width))
