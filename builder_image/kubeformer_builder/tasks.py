"""Per-task model loading and the export wrapper that gives every task fixed output names.

The wrapper is what gets exported: input tensors named after the tokenizer outputs the model
takes (`model_inputs.select_inputs`), outputs named as docs/artifact-format.md says (LOGITS, EMBEDDING,
START_LOGITS/END_LOGITS), so the Triton repository never depends on a model's quirks.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kubeformer_builder.config import Task
from kubeformer_builder.errors import SourceError, UnsupportedModelError
from kubeformer_builder.sentence_pipeline import SentenceHead

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


def auto_class(task: Task):
    """The transformers Auto class that loads a model with `task`'s head."""
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

    auto = auto_class(task)
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
    """Positional inputs (in tokenizer order) to the task's named outputs.

    Feature extraction needs `head`: the sentence-transformers modules after the transformer
    (sentence_pipeline.SentenceHead), which turn token embeddings into the sentence embedding.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        input_names: tuple[str, ...],
        head: SentenceHead | None = None,
    ):
        super().__init__()
        if task is Task.FEATURE_EXTRACTION and head is None:
            raise ValueError("feature-extraction exports need the sentence-transformers head")
        self.model, self.task, self.input_names, self.head = model, task, input_names, head
        # The exporter restores the wrapper's mode recursively afterwards: a wrapper left in
        # training mode would switch dropout on in the reference model the gate compares with.
        self.eval()

    def forward(self, *tensors: torch.Tensor):
        inputs = dict(zip(self.input_names, tensors, strict=True))
        output = self.model(**inputs)
        if self.task is Task.FEATURE_EXTRACTION:
            return self.head(output.last_hidden_state, inputs["attention_mask"])
        if self.task is Task.QUESTION_ANSWERING:
            return output.start_logits, output.end_logits
        return output.logits


def output_dims(wrapper: ExportWrapper) -> dict[str, list[int]]:
    """Per-request output dims (batch dim excluded), as Triton's config wants them."""
    task, config = wrapper.task, wrapper.model.config
    if task is Task.TEXT_CLASSIFICATION:
        return {"LOGITS": [config.num_labels]}
    if task is Task.FEATURE_EXTRACTION:
        return {"EMBEDDING": [wrapper.head.dimension]}
    if task is Task.TOKEN_CLASSIFICATION:
        return {"LOGITS": [-1, config.num_labels]}
    return {"START_LOGITS": [-1], "END_LOGITS": [-1]}


def id2label(task: Task, model: torch.nn.Module) -> dict[int, str] | None:
    if task in (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION):
        return {int(k): str(v) for k, v in model.config.id2label.items()}
    return None
