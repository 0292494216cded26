"""A mixed-precision fp16 ONNX graph: what a strongly typed TensorRT network builds fp16 from.

TensorRT 10's strongly typed networks (and TensorRT 11, which removed BuilderFlag.FP16) take each
tensor's type from the graph, so fp16 has to be in the ONNX itself. ONNX Runtime's float16
converter turns every float op to fp16 except the ones listed here, which overflow or lose too
much in fp16 and stay fp32 with casts around them: LayerNormalization (variance of large
activations), Softmax (exp), the reductions and powers of pooling and L2 normalisation. Inputs and
outputs keep their types, so the served model's contract is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# Kept fp32: where fp16 overflows (65504) or accumulates over a whole axis.
FP32_OPS = (
    "LayerNormalization",
    "SkipLayerNormalization",
    "Softmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceL2",
    "ReduceMax",
    "Pow",
    "Sqrt",
    "Exp",
)


def convert_mixed_fp16(source: Path, dest: Path, keep_fp32_nodes: Sequence[str] = ()) -> Path:
    """Write dest/model.onnx: `source` in fp16 but for FP32_OPS and the nodes named in `keep_fp32_nodes`."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS],
        node_block_list=list(keep_fp32_nodes),
    )
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "model.onnx"
    onnx.save_model(converted, str(target))
    return target
