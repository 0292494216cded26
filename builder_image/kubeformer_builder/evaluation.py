"""Everything a variant is judged by: gate outputs against fp32 PyTorch and latency, on fixed inputs.

Built once per build from the held-out texts, so every variant sees identical inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kubeformer_builder import gate, inference
from kubeformer_builder.config import Backend, BuildConfig, GateMetric, Precision
from kubeformer_builder.labeled import LabeledSet
from kubeformer_builder.tasks import ExportWrapper
from kubeformer_builder.timing import Latency, measure

Runner = Callable[[inference.Batch], tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class TimingCase:
    label: str
    batch: inference.Batch
    size: int
    sequence: int


class Evaluator:
    """Reference outputs of fp32 PyTorch and the timing inputs for one build."""

    def __init__(
        self,
        wrapper: ExportWrapper,
        tokenizer,
        config: BuildConfig,
        held_out: tuple[str, ...],
        labeled: LabeledSet | None = None,
    ):
        """held_out: unlabeled texts (the calibration split's); labeled: the user's labeled data, which
        labeled metrics score instead."""
        self.wrapper, self.config, self.labeled = wrapper, config, labeled
        self.metric: GateMetric = gate.resolve_metric(config.task, config.gate.metric, labeled is not None)
        self.max_drop = (
            config.gate.max_drop if config.gate.max_drop is not None else gate.default_max_drop(self.metric)
        )
        max_length = config.shapes.sequence.max
        if labeled is not None and self.metric.labeled:
            self.held_out = labeled.batches
        else:
            self.held_out = inference.batches(
                tokenizer, config.task, held_out, wrapper.input_names, max_length
            )
        self.reference = [inference.run_torch(wrapper, batch) for batch in self.held_out]
        self.cases = self._timing_cases(tokenizer, held_out)

    def _timing_cases(self, tokenizer, texts: tuple[str, ...]) -> list[TimingCase]:
        """Single-request latency and batched throughput at the profile's optimal shapes."""
        shapes, task, names = self.config.shapes, self.config.task, self.wrapper.input_names
        sequence = shapes.sequence.opt
        cases = []
        for label, size in (("single", 1), ("batched", shapes.batch.opt)):
            chosen = [texts[i % len(texts)] * 8 for i in range(size)]  # long enough to fill `sequence`
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
            plan = tensorrt.build_engine(
                model, engine_dir, self.config.shapes, precision, self.wrapper.input_names
            )
            return tensorrt.EngineRunner(plan), plan
        session = inference.make_session(model)
        return (lambda batch: inference.run_session(session, batch)), model

    def check(self, run: Runner, samples: int | None = None) -> gate.GateReport:
        held = self.held_out[:samples] if samples else self.held_out
        outputs = [run(batch) for batch in held]
        reference = self.reference[: len(held)]
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
            self.reference[: len(held)],
            outputs,
            [batch["attention_mask"] for batch in held],
        )

    def time_runner(self, run: Runner) -> dict[str, Latency]:
        return {
            case.label: measure(lambda c=case: run(c.batch), case.size, case.sequence) for case in self.cases
        }

    def time_pytorch(self) -> dict[str, Latency]:
        return self.time_runner(lambda batch: inference.run_torch(self.wrapper, batch))
