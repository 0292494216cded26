"""Per-task model loading and the export wrapper that gives every task fixed output names.

The wrapper is what gets exported: input tensors named after the tokenizer outputs the model
takes (`model_inputs.select_inputs`), outputs named as docs/artifact-format.md says (LOGITS, EMBEDDING,
START_LOGITS/END_LOGITS), so the Triton repository never depends on a model's quirks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from kubeformer_builder.config import Task
from kubeformer_builder.errors import SourceError, UnsupportedModelError


@dataclass(frozen=True)
class Pooling:
    """Sentence-embedding pooling, read from a sentence-transformers layout when present."""

    mode: str = "mean"  # mean | cls | max
    normalize: bool = False


OUTPUT_NAMES: dict[Task, tuple[str, ...]] = {
    Task.TEXT_CLASSIFICATION: ("LOGITS",),
    Task.FEATURE_EXTRACTION: ("EMBEDDING",),
    Task.TOKEN_CLASSIFICATION: ("LOGITS",),
    Task.QUESTION_ANSWERING: ("START_LOGITS", "END_LOGITS"),
}

# Whether outputs keep the sequence axis (one value per token) or are one vector per text.
PER_TOKEN_OUTPUTS: dict[Task, bool] = {
    Task.TEXT_CLASSIFICATION: False,
    Task.FEATURE_EXTRACTION: False,
    Task.TOKEN_CLASSIFICATION: True,
    Task.QUESTION_ANSWERING: True,
}

# Weight-name fragments of each task's head; missing from a checkpoint = the model lacks the head.
_HEAD_FRAGMENTS = ("classifier", "qa_outputs", "score", "pre_classifier")


def read_pooling(model_dir: Path) -> Pooling:
    """Pooling from modules.json + the Pooling module's config; mean without normalization otherwise."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return Pooling()
    modules = json.loads(modules_file.read_text())
    pooling, normalize = Pooling(), False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            config = json.loads((model_dir / module.get("path", "") / "config.json").read_text())
            if config.get("pooling_mode_cls_token"):
                pooling = Pooling("cls")
            elif config.get("pooling_mode_max_tokens"):
                pooling = Pooling("max")
        elif kind.endswith("Normalize"):
            normalize = True
    return Pooling(pooling.mode, normalize)


def _auto_class(task: Task):
    import transformers

    return {
        Task.TEXT_CLASSIFICATION: transformers.AutoModelForSequenceClassification,
        Task.FEATURE_EXTRACTION: transformers.AutoModel,
        Task.TOKEN_CLASSIFICATION: transformers.AutoModelForTokenClassification,
        Task.QUESTION_ANSWERING: transformers.AutoModelForQuestionAnswering,
    }[task]


def load_model(model_dir: Path, task: Task) -> torch.nn.Module:
    """Load for the task with eager attention (the fusable graph); refuse a model without the head."""
    from safetensors import SafetensorError

    auto = _auto_class(task)
    try:
        model, info = auto.from_pretrained(model_dir, attn_implementation="eager", output_loading_info=True)
    except ValueError as exc:
        raise UnsupportedModelError(f"model.task: {task.value} does not fit this model: {exc}") from exc
    except (SafetensorError, OSError, RuntimeError, EOFError) as exc:  # truncated or corrupt weights
        weights = sorted(p.name for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
        raise SourceError(
            f"model.source: the weights in {model_dir} ({', '.join(weights) or 'none found'}) cannot be "
            f"read, the files may be truncated or corrupt: {type(exc).__name__}: {exc}"
        ) from exc
    missing_head = [key for key in info.get("missing_keys", ()) if key.split(".")[0] in _HEAD_FRAGMENTS]
    if task is not Task.FEATURE_EXTRACTION and missing_head:
        raise UnsupportedModelError(
            f"model.task: {task.value} needs a trained task head but the checkpoint has none "
            f"(missing {', '.join(sorted(missing_head)[:3])}); use feature-extraction or a fine-tuned model"
        )
    return model.eval()


class ExportWrapper(torch.nn.Module):
    """Positional inputs (in tokenizer order) to the task's named outputs."""

    def __init__(self, model: torch.nn.Module, task: Task, input_names: tuple[str, ...], pooling: Pooling):
        super().__init__()
        self.model, self.task, self.input_names, self.pooling = model, task, input_names, pooling
        # The exporter restores the wrapper's mode recursively afterwards: a wrapper left in
        # training mode would switch dropout on in the reference model the gate compares with.
        self.eval()

    def forward(self, *tensors: torch.Tensor):
        inputs = dict(zip(self.input_names, tensors, strict=True))
        output = self.model(**inputs)
        if self.task is Task.FEATURE_EXTRACTION:
            return pool(output.last_hidden_state, inputs["attention_mask"], self.pooling)
        if self.task is Task.QUESTION_ANSWERING:
            return output.start_logits, output.end_logits
        return output.logits


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    if pooling.mode == "cls":
        pooled = hidden[:, 0]
    elif pooling.mode == "max":
        masked = hidden.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(hidden.dtype).min)
        pooled = masked.max(dim=1).values
    else:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    if pooling.normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
    return pooled


def output_dims(task: Task, model: torch.nn.Module) -> dict[str, list[int]]:
    """Per-request output dims (batch dim excluded), as Triton's config wants them."""
    config = model.config
    if task is Task.TEXT_CLASSIFICATION:
        return {"LOGITS": [config.num_labels]}
    if task is Task.FEATURE_EXTRACTION:
        return {"EMBEDDING": [config.hidden_size]}
    if task is Task.TOKEN_CLASSIFICATION:
        return {"LOGITS": [-1, config.num_labels]}
    return {"START_LOGITS": [-1], "END_LOGITS": [-1]}


def id2label(task: Task, model: torch.nn.Module) -> dict[int, str] | None:
    if task in (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION):
        return {int(k): str(v) for k, v in model.config.id2label.items()}
    return None
