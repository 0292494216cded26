"""Everything a variant is judged by: gate outputs against the reference library and latency.

The reference is what the user would otherwise run, in fp32: `SentenceTransformer.encode` for
feature extraction (the model's own sentence-transformers pipeline, or the library's default
mean pooling for a plain transformers model), the transformers model with the task's head
otherwise. It is loaded on its own, never kubeformer's export wrapper, so a wrong export shows
up as a gate drop. Built once per build from the held-out texts, so every variant sees identical
inputs.
Gate batches are inputs the served model can get: at most `shapes.batch.max` texts, padded to at
least `shapes.sequence.min` tokens (a TensorRT engine refuses anything outside its profile).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kubeformer_builder import calibration, gate, inference
from kubeformer_builder.calibration import Text
from kubeformer_builder.config import Backend, BuildConfig, GateMetric, Precision, Task
from kubeformer_builder.labeled import LabeledSet
from kubeformer_builder.tasks import ExportWrapper, auto_class
from kubeformer_builder.timing import Latency, measure_interleaved

Runner = Callable[[inference.Batch], tuple[np.ndarray, ...]]
# Held-out texts are gated in batches of this many (unless the profile allows fewer), sorted by length
# as serving buckets them.
_GATE_BATCH = 8
BASELINE = "pytorch"


def _tensors(batch: inference.Batch, accepted: set[str] | None = None) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in batch.items() if accepted is None or k in accepted}


class SentenceTransformersReference:
    """`SentenceTransformer.encode`, truncating where the build truncates."""

    library = "sentence-transformers"

    def __init__(self, model, max_length: int, tokenizer=None):
        """model: a loaded SentenceTransformer; tokenizer: a replacement for its own (model.tokenizer)."""
        if tokenizer is not None:  # a copy: max_seq_length below writes into the tokenizer
            model[0].processor = copy.deepcopy(tokenizer)
        model.max_seq_length = min(model.max_seq_length or max_length, max_length)
        self.model = model

    @property
    def version(self) -> str:
        import sentence_transformers

        return sentence_transformers.__version__

    def outputs(self, texts: Sequence[str], batch: inference.Batch) -> tuple[np.ndarray, ...]:
        """(embeddings (len(texts), dimension) float32,) from the library's own tokenization."""
        embeddings = self.model.encode(
            list(texts), batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False
        )
        return (np.asarray(embeddings, dtype=np.float32),)

    def run(self, batch: inference.Batch) -> object:
        """The library's forward pass on already tokenized inputs: what latency is compared with."""
        with torch.inference_mode():
            return self.model(_tensors(batch))["sentence_embedding"]

    def to_dict(self) -> dict:
        modules = [type(module).__name__ for module in self.model]
        return {
            "library": self.library,
            "version": self.version,
            "pipeline": modules,
            "max_seq_length": self.model.max_seq_length,
        }


class TransformersReference:
    """The transformers model with the task's head, default attention, fp32, on the same tokens."""

    library = "transformers"

    def __init__(self, model: torch.nn.Module, task: Task):
        self.model, self.task = model.eval(), task
        self.accepted = set(inspect.signature(model.forward).parameters)

    @property
    def version(self) -> str:
        import transformers

        return transformers.__version__

    def outputs(self, texts: Sequence[str], batch: inference.Batch) -> tuple[np.ndarray, ...]:
        """The task's outputs in tasks.OUTPUT_NAMES order, float32 numpy."""
        output = self.run(batch)
        if self.task is Task.QUESTION_ANSWERING:
            found = (output.start_logits, output.end_logits)
        else:
            found = (output.logits,)
        return tuple(value.float().numpy() for value in found)

    def run(self, batch: inference.Batch):
        with torch.inference_mode():
            return self.model(**_tensors(batch, self.accepted))

    def to_dict(self) -> dict:
        return {"library": self.library, "version": self.version, "model_class": type(self.model).__name__}


Reference = SentenceTransformersReference | TransformersReference


def make_reference(config: BuildConfig, model_dir: Path, tokenizer, sentence_model=None) -> Reference:
    """The library the user would run: `sentence_model` (a loaded SentenceTransformer) for feature
    extraction, a fresh transformers model with the task's head otherwise. `tokenizer` replaces the
    pipeline's own when the build names a separate one (model.tokenizer)."""
    max_length = config.shapes.sequence.max
    if config.task is Task.FEATURE_EXTRACTION:
        replacement = tokenizer if config.tokenizer else None
        return SentenceTransformersReference(sentence_model, max_length, replacement)
    return TransformersReference(auto_class(config.task).from_pretrained(model_dir), config.task)


def _pad_to(batch: inference.Batch, length: int, pad_id: int) -> inference.Batch:
    """`batch` right-padded to at least `length` tokens (masked out, ids `pad_id`)."""
    width = next(iter(batch.values())).shape[1]
    if width >= length:
        return batch
    fill = {"input_ids": pad_id}
    return {
        name: np.pad(values, ((0, 0), (0, length - width)), constant_values=fill.get(name, 0))
        for name, values in batch.items()
    }


@dataclass(frozen=True)
class TimingCase:
    label: str
    batch: inference.Batch
    size: int
    sequence: int


class Evaluator:
    """Reference outputs of the reference library and the timing inputs for one build."""

    def __init__(
        self,
        wrapper: ExportWrapper,
        tokenizer,
        config: BuildConfig,
        held_out: tuple[Text, ...],
        reference: Reference,
        labeled: LabeledSet | None = None,
    ):
        """held_out: unlabeled texts (the calibration split's); labeled: the user's labeled data, which
        labeled metrics score instead (against the labels, the reference scored the same way)."""
        self.wrapper, self.config, self.reference, self.labeled = wrapper, config, reference, labeled
        self.metric: GateMetric = gate.resolve_metric(config.task, config.gate.metric, labeled is not None)
        self.max_drop = (
            config.gate.max_drop if config.gate.max_drop is not None else gate.default_max_drop(self.metric)
        )
        shapes, names = config.shapes, wrapper.input_names
        if labeled is not None and self.metric.labeled:
            self.held_out = labeled.batches
            groups: list[Sequence[Text]] = [() for _ in self.held_out]  # transformers reads the tokens
        else:
            size = min(_GATE_BATCH, shapes.batch.max)
            ordered = sorted(held_out, key=calibration.text_length)
            groups = [ordered[i : i + size] for i in range(0, len(ordered), size)]
            pad_id = tokenizer.pad_token_id or 0
            self.held_out = [
                _pad_to(
                    inference.tokenize(tokenizer, config.task, g, names, shapes.sequence.max),
                    shapes.sequence.min,
                    pad_id,
                )
                for g in groups
            ]
        self.expected = [reference.outputs(g, b) for g, b in zip(groups, self.held_out, strict=True)]
        self.cases = self._timing_cases(tokenizer, held_out)

    def _timing_cases(self, tokenizer, texts: tuple[Text, ...]) -> list[TimingCase]:
        """Single-request latency and batched throughput at the profile's optimal shapes."""
        shapes, task, names = self.config.shapes, self.config.task, self.wrapper.input_names
        sequence = shapes.sequence.opt
        cases = []
        for label, size in (("single", 1), ("batched", shapes.batch.opt)):
            chosen = [calibration.lengthen(texts[i % len(texts)], 8) for i in range(size)]  # fills `sequence`
            batch = inference.tokenize(tokenizer, task, chosen, names, sequence, pad_to=sequence)
            cases.append(TimingCase(label, batch, size, sequence))
        return cases

    def runner(self, model: Path, precision: Precision) -> tuple[Runner, Path]:
        """Something that runs batches through the model as it will be served, and its engine file.

        ONNX Runtime runs the ONNX itself; TensorRT first compiles it, so the gate judges the
        very engine that ships.
        """
        if self.config.backend is Backend.TENSORRT:
            from kubeformer_builder.stages import tensorrt

            engine_dir = model.parent / f"engine-{precision.value}"
            plan = tensorrt.build_engine(model, engine_dir, self.config.shapes, self.wrapper.input_names)
            return tensorrt.EngineRunner(plan), plan
        return self.graph_runner(model), model

    def graph_runner(self, model: Path) -> Runner:
        """The ONNX graph itself under ONNX Runtime (on the CPU without CUDA)."""
        session = inference.make_session(model)
        return lambda batch: inference.run_session(session, batch)

    def check_graph(self, model: Path) -> gate.GateReport | None:
        """For TensorRT, the gate on the fp16 or Q/DQ graph under ONNX Runtime, before any engine
        exists: what the variant costs in accuracy, known on a machine without a GPU too.
        None for ONNX Runtime builds, whose runner is that graph already."""
        if self.config.backend is not Backend.TENSORRT:
            return None
        return self.check(self.graph_runner(model))

    def check(self, run: Runner, samples: int | None = None) -> gate.GateReport:
        held = self.held_out[:samples] if samples else self.held_out
        outputs = [run(batch) for batch in held]
        reference = self.expected[: len(held)]
        if self.labeled is not None and self.metric.labeled:
            return gate.labeled_report(
                self.metric,
                self.labeled.score(self.metric, reference),
                self.labeled.score(self.metric, outputs),
                self.max_drop,
                gate.max_abs_diff(reference, outputs),
                sum(len(batch["input_ids"]) for batch in held),
            )
        return gate.evaluate(
            self.config.task,
            self.metric,
            self.max_drop,
            self.expected[: len(held)],
            outputs,
            [batch["attention_mask"] for batch in held],
        )

    def time_against_reference(self, runners: dict[str, Runner]) -> dict[str, dict[str, Latency]]:
        """Latency per case of the reference (key BASELINE) and every runner, measured interleaved."""
        contenders: dict[str, Callable[[inference.Batch], object]] = {BASELINE: self.reference.run, **runners}
        found: dict[str, dict[str, Latency]] = {name: {} for name in contenders}
        for case in self.cases:
            calls = {name: (lambda r=run, b=case.batch: r(b)) for name, run in contenders.items()}
            budget = self.config.benchmark_seconds
            for name, latency in measure_interleaved(calls, case.size, case.sequence, budget).items():
                found[name][case.label] = latency
        return found
