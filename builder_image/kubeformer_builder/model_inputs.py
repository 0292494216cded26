"""What a model takes: the inputs its forward uses and the longest sequence it can index.

Both come from the model (its forward signature and config) and the files saved beside it, not
from the tokenizer alone: a tokenizer may emit inputs the model ignores (token_type_ids for
DistilBERT, MPNet or DeBERTa-v3) and allow longer texts than the position embeddings hold.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeformer_builder.architectures import Architecture
from kubeformer_builder.errors import SourceError, UnsupportedModelError

# Tokenizer outputs an encoder can take; others (e.g. special_tokens_mask) are never model inputs.
TOKENIZER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# transformers sets model_max_length to VERY_LARGE_INTEGER (1e30) when a tokenizer names none.
_UNSET_LENGTH = 1_000_000
ST_CONFIG = "sentence_bert_config.json"


def select_inputs(model: Any, tokenizer_names: Sequence[str]) -> tuple[str, ...]:
    """The tokenizer outputs the model takes, in the tokenizer's order.

    An output is dropped when the model's forward has no parameter of that name, and
    token_type_ids also when the model has fewer than two token types (type_vocab_size 0 or 1):
    the model then uses its own zeros, the only value its embeddings accept.
    Raises UnsupportedModelError when input_ids is not among them.
    """
    parameters = inspect.signature(model.forward).parameters
    type_vocab_size = getattr(model.config, "type_vocab_size", 2)
    chosen = tuple(
        name
        for name in tokenizer_names
        if name in TOKENIZER_INPUTS
        and name in parameters
        and (name != "token_type_ids" or type_vocab_size >= 2)
    )
    if "input_ids" not in chosen:
        raise UnsupportedModelError(
            f"model.source: the model takes no input_ids from the tokenizer "
            f"(it emits {list(tokenizer_names)})"
        )
    return chosen


@dataclass(frozen=True)
class SequenceLimit:
    """The longest sequence (tokens, special tokens included) the model serves, and why."""

    tokens: int
    bounds: dict[str, int]  # what each source allows, e.g. {"position embeddings": 512}

    def describe(self) -> str:
        return ", ".join(f"{source} {tokens}" for source, tokens in self.bounds.items())


def read_st_max_seq_length(model_dir: Path) -> int | None:
    """sentence-transformers' max_seq_length from sentence_bert_config.json, None when absent."""
    path = model_dir / ST_CONFIG
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("max_seq_length")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise SourceError(f"model.source: {path.name} is not a JSON object: {exc}") from exc
    return value if isinstance(value, int) and value > 0 else None


def sequence_limit(
    arch: Architecture,
    model_config: Any,
    tokenizer_max_length: Any,
    st_max_seq_length: int | None,
    ceiling: int,
) -> SequenceLimit:
    """The smallest of what the position embeddings can index and the length the reference
    truncates at: sentence-transformers' max_seq_length when the model has one (it overrides the
    tokenizer's, as sentence-transformers does), else the tokenizer's model_max_length when set.

    A model with neither an absolute position table nor a truncation length keeps its
    max_position_embeddings (the length it was trained at); `ceiling` caps everything.
    """
    bounds: dict[str, int] = {}
    positions = arch.position_limit(model_config)
    if positions is not None:
        bounds["position embeddings"] = positions
    if st_max_seq_length is not None:
        bounds["sentence-transformers max_seq_length"] = st_max_seq_length
    elif isinstance(tokenizer_max_length, int) and 0 < tokenizer_max_length < _UNSET_LENGTH:
        bounds["tokenizer model_max_length"] = tokenizer_max_length
    trained = getattr(model_config, "max_position_embeddings", None)
    if not bounds and trained:
        bounds["max_position_embeddings"] = trained
    if min(bounds.values(), default=ceiling + 1) > ceiling:
        bounds["builder maximum"] = ceiling
    return SequenceLimit(min(bounds.values()), bounds)
