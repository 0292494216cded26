"""Supported encoder families, described declaratively.

Each entry says how ONNX Runtime's transformer optimizer should treat the family and what
is known about it. Generic code never tests a model type by name: a quirk belongs here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeformer_builder.errors import UnsupportedModelError


@dataclass(frozen=True)
class Architecture:
    model_type: str
    # onnxruntime.transformers optimizer family; every supported encoder uses the BERT fusions.
    optimizer_model_type: str = "bert"
    # False where ORT has no fused Attention for the family's attention (relative positions...).
    fuses_attention: bool = True
    opset: int = 17
    # RoBERTa-style position ids start after the padding index (padding_idx + 1): the config
    # attribute holding that index, or the index itself where the model hard-codes it.
    position_padding_idx: str | int | None = None
    # Config flag that switches absolute position embeddings on; off = relative positions only.
    absolute_positions_flag: str | None = None

    def position_limit(self, config: Any) -> int | None:
        """Longest sequence (tokens, special tokens included) the position embeddings can index.

        None when the model has no absolute position table (relative positions index any length).
        """
        if self.absolute_positions_flag and not getattr(config, self.absolute_positions_flag, True):
            return None
        table = getattr(config, "max_position_embeddings", None)
        if table is None:
            return None
        padding_idx = self.position_padding_idx
        if isinstance(padding_idx, str):
            padding_idx = getattr(config, padding_idx, None)
        return table if padding_idx is None else table - padding_idx - 1


ARCHITECTURES: dict[str, Architecture] = {
    spec.model_type: spec
    for spec in (
        Architecture("bert"),
        Architecture("roberta", position_padding_idx="pad_token_id"),
        Architecture("xlm-roberta", position_padding_idx="pad_token_id"),
        Architecture("camembert", position_padding_idx="pad_token_id"),
        Architecture("distilbert"),
        Architecture("electra"),
        Architecture("albert"),
        Architecture("ernie"),
        # Relative-position attention: SkipLayerNorm and Gelu fuse, attention stays unfused.
        Architecture("deberta-v2", fuses_attention=False, absolute_positions_flag="position_biased_input"),
        # MPNetEmbeddings fixes padding_idx at 1 whatever the config's pad_token_id.
        Architecture("mpnet", fuses_attention=False, position_padding_idx=1),
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
