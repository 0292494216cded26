"""Fuse the exported graph with ONNX Runtime's transformer optimizer.

Offline fusion (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu) is
what makes the fp32 model fast and what the int8 quantizer then quantizes as whole ops.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

from kubeformer_builder.architectures import Architecture

FUSED_OPS = ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu")


def optimize_onnx(
    source: Path, dest: Path, arch: Architecture, num_heads: int, hidden_size: int
) -> tuple[Path, dict]:
    """Write the fused model to dest/model.onnx; return it with a count of fused ops."""
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimizer logs every pattern it fails to match at WARNING; that is noise to users.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    dest.mkdir(parents=True, exist_ok=True)
    optimized = optimize_model(
        str(source),
        model_type=arch.optimizer_model_type,
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=1,  # fusions only; level 2+ would bake CPU-specific kernels into the file
    )
    target = dest / "model.onnx"
    annotate_types(optimized)
    optimized.save_model_to_file(str(target), use_external_data_format=_is_external(source))
    counts = collections.Counter(node.op_type for node in optimized.model.graph.node)
    return target, {op: counts[op] for op in FUSED_OPS if counts[op]}


def annotate_types(optimized) -> None:
    """Record every tensor's type and shape in value_info.

    ONNX's own shape inference stops at contrib ops (Attention, SkipLayerNormalization), so
    the int8 calibrator would see no tensor to calibrate; ORT's symbolic inference knows them.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    inferred = SymbolicShapeInference.infer_shapes(optimized.model, auto_merge=True, guess_output_rank=True)
    optimized.model.graph.ClearField("value_info")
    optimized.model.graph.value_info.extend(inferred.graph.value_info)


def _is_external(model_path: Path) -> bool:
    return (model_path.parent / "model.onnx.data").exists()
