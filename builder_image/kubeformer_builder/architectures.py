"""Supported encoder families, described declaratively.

Each entry says how ONNX Runtime's transformer optimizer should treat the family and what
is known about it. Generic code never tests a model type by name: a quirk belongs here.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeformer_builder.errors import UnsupportedModelError


@dataclass(frozen=True)
class Architecture:
    model_type: str
    # onnxruntime.transformers optimizer family; every supported encoder uses the BERT fusions.
    optimizer_model_type: str = "bert"
    # False where ORT has no fused Attention for the family's attention (relative positions...).
    fuses_attention: bool = True
    opset: int = 17


ARCHITECTURES: dict[str, Architecture] = {
    spec.model_type: spec
    for spec in (
        Architecture("bert"),
        Architecture("roberta"),
        Architecture("xlm-roberta"),
        Architecture("camembert"),
        Architecture("distilbert"),
        Architecture("electra"),
        Architecture("albert"),
        Architecture("ernie"),
        # Relative-position attention: SkipLayerNorm and Gelu fuse, attention stays unfused.
        Architecture("deberta-v2", fuses_attention=False),
        Architecture("mpnet", fuses_attention=False),
    )
}


def find_architecture(model_type: str) -> Architecture:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedModelError(
            f"model.source: architecture {model_type!r} is not supported; supported: {supported}"
        ) from None
