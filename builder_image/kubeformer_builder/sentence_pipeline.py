"""The sentence-transformers pipeline of a feature-extraction model, read by the library itself.

`load_sentence_transformer` loads the model directory with `SentenceTransformer` exactly as a user
would (modules.json with every module; a plain transformers directory gets the library's default,
mean pooling). `SentenceHead` holds the library's own modules after the transformer (Pooling in
either config format, Dense with its activation and weights, Normalize, ...) so that the exported
graph computes what `SentenceTransformer.encode` returns. A module outside `EXPORTABLE` is refused
at build time with its type and path, never skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from kubeformer_builder.errors import SourceError, UnsupportedModelError

log = logging.getLogger("kubeformer.sentence_pipeline")

# Modules after the transformer whose forward is plain tensor code the ONNX exporter traces.
EXPORTABLE = ("Pooling", "Dense", "Normalize", "LayerNorm", "Dropout")


def _exportable_classes() -> tuple[type, ...]:
    from sentence_transformers.sentence_transformer import modules

    return tuple(getattr(modules, name) for name in EXPORTABLE)


def _declared_modules(model_dir: Path) -> dict[str, dict]:
    """modules.json entries by module name ({} for a plain transformers directory)."""
    path = model_dir / "modules.json"
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
        return {str(entry["name"]): entry for entry in entries}
    except (ValueError, TypeError, KeyError) as exc:
        raise SourceError(f"model.source: {path} is not a sentence-transformers modules.json: {exc}") from exc


def _describe(declared: dict[str, dict], name: str, module: torch.nn.Module) -> str:
    entry = declared.get(name, {})
    kind = entry.get("type", f"{type(module).__module__}.{type(module).__name__}")
    return f"{kind} (path {entry.get('path', '')!r})"


def load_sentence_transformer(model_dir: Path):
    """The model as `SentenceTransformer(model_dir)` loads it, on CPU, in eval mode.

    Raises UnsupportedModelError when the library cannot load the pipeline (e.g. a custom module
    class) or when the pipeline changes the text before tokenizing in a way serving does not
    reproduce (a default prompt, do_lower_case).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Transformer

    declared = _declared_modules(model_dir)
    try:
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    except (ImportError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        kinds = ", ".join(entry.get("type", "?") for entry in declared.values()) or "none"
        raise UnsupportedModelError(
            f"model.source: sentence-transformers cannot load the pipeline in {model_dir} "
            f"(modules: {kinds}): {type(exc).__name__}: {exc}"
        ) from exc
    first = model[0]
    if not isinstance(first, Transformer):
        raise UnsupportedModelError(
            "model.source: the sentence-transformers pipeline starts with "
            f"{_describe(declared, '0', first)}; kubeformer serves pipelines that start with a Transformer"
        )
    if getattr(first, "do_lower_case", False):
        raise UnsupportedModelError(
            "model.source: the Transformer module sets do_lower_case (sentence_bert_config.json), which "
            "lowercases texts outside the tokenizer; serving would not reproduce it"
        )
    if model.default_prompt_name:
        raise UnsupportedModelError(
            f"model.source: the pipeline prepends the prompt {model.default_prompt_name!r} to every text by "
            "default (config_sentence_transformers.json default_prompt_name); serving sends texts unchanged"
        )
    return model.eval()


class SentenceHead(torch.nn.Module):
    """The pipeline's modules after the transformer: token embeddings + mask -> sentence embedding.

    forward: hidden (batch, sequence, hidden) float, mask (batch, sequence) int64 ->
    (batch, dimension) float.
    """

    def __init__(self, modules: list[torch.nn.Module], dimension: int, description: tuple[str, ...]):
        super().__init__()
        self.stages = torch.nn.ModuleList(modules)
        self.dimension, self.description = dimension, description

    @property
    def normalizes(self) -> bool:
        """Whether the pipeline ends with Normalize: every embedding then has unit L2 norm."""
        return bool(self.stages) and type(self.stages[-1]).__name__ == "Normalize"

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        features = {"token_embeddings": hidden, "attention_mask": mask}
        for stage in self.stages:
            features = stage(features)
        return features["sentence_embedding"]


def export_head(model, model_dir: Path) -> SentenceHead:
    """The exportable head of a loaded SentenceTransformer; UnsupportedModelError names any other module."""
    declared, allowed = _declared_modules(model_dir), _exportable_classes()
    stages, description = [], []
    for name, module in list(model.named_children())[1:]:
        if not isinstance(module, allowed):
            raise UnsupportedModelError(
                f"model.source: the sentence-transformers module {_describe(declared, name, module)} cannot "
                f"be exported; kubeformer reproduces {', '.join(EXPORTABLE)} after the Transformer"
            )
        stages.append(module)
        description.append(f"{type(module).__name__}({json.dumps(module.get_config_dict(), sort_keys=True)})")
    dimension = model.get_embedding_dimension()
    if dimension is None:
        raise UnsupportedModelError(
            "model.source: the sentence-transformers pipeline has no Pooling module, so it returns no "
            "sentence embedding; kubeformer serves one vector per text"
        )
    log.info("sentence-transformers pipeline: Transformer -> %s", " -> ".join(description))
    return SentenceHead(stages, int(dimension), tuple(description)).eval()
