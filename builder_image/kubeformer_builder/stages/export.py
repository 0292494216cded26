"""Export a task model to ONNX with dynamic batch and sequence axes.

Uses the TorchScript exporter (`dynamo=False`) on purpose: with torch 2.13 and transformers
5.x the dynamo exporter produces a graph in which ONNX Runtime's transformer optimizer fuses
nothing, while this path gets Attention, EmbedLayerNormalization, SkipLayerNormalization and
BiasGelu fused (measured on BERT, DistilBERT, ELECTRA).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from kubeformer_builder.tasks import OUTPUT_NAMES, PER_TOKEN_OUTPUTS, ExportWrapper

# Protobuf cannot hold a single file over 2 GB: larger models keep weights as external data.
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def dummy_inputs(
    input_names: tuple[str, ...], batch: int = 2, sequence: int = 16
) -> tuple[torch.Tensor, ...]:
    """Traced inputs with padding in the last row: an all-ones mask lets transformers 5 skip
    building the attention mask, and the traced graph would then ignore padding forever."""
    generator = torch.Generator().manual_seed(0)
    tensors = []
    for name in input_names:
        if name == "input_ids":
            tensors.append(torch.randint(5, 100, (batch, sequence), generator=generator))
        elif name == "attention_mask":
            mask = torch.ones(batch, sequence, dtype=torch.long)
            mask[-1, sequence // 2 :] = 0
            tensors.append(mask)
        else:  # token_type_ids and other id-like inputs
            tensors.append(torch.zeros(batch, sequence, dtype=torch.long))
    return tuple(tensors)


def export_onnx(wrapper: ExportWrapper, dest: Path, opset: int) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "model.onnx"
    input_names = wrapper.input_names
    output_names = OUTPUT_NAMES[wrapper.task]
    per_token = {0: "batch", 1: "sequence"}
    axes = {name: per_token for name in input_names}
    axes.update(
        {name: per_token if PER_TOKEN_OUTPUTS[wrapper.task] else {0: "batch"} for name in output_names}
    )
    large = sum(p.numel() * p.element_size() for p in wrapper.parameters()) > _EXTERNAL_DATA_THRESHOLD
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes
        torch.onnx.export(
            wrapper,
            dummy_inputs(input_names),
            str(target),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    if large:
        import onnx

        model = onnx.load(str(target))
        onnx.save_model(model, str(target), save_as_external_data=True, location="model.onnx.data")
    return target
