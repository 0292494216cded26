"""Everything a variant is judged by: gate outputs against fp32 PyTorch and latency, on fixed inputs.

Built once per build from the held-out texts, so every variant sees identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubeformer_builder import gate, inference
from kubeformer_builder.config import BuildConfig, GateMetric
from kubeformer_builder.tasks import ExportWrapper
from kubeformer_builder.timing import Latency, measure


@dataclass(frozen=True)
class TimingCase:
    label: str
    batch: inference.Batch
    size: int
    sequence: int


class Evaluator:
    """Reference outputs of fp32 PyTorch and the timing inputs for one build."""

    def __init__(self, wrapper: ExportWrapper, tokenizer, config: BuildConfig, held_out: tuple[str, ...]):
        self.wrapper, self.config = wrapper, config
        self.metric: GateMetric = gate.resolve_metric(config.task, config.gate.metric)
        max_length = config.shapes.sequence.max
        self.held_out = inference.batches(tokenizer, config.task, held_out, wrapper.input_names, max_length)
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

    def check(self, model: Path, samples: int | None = None) -> gate.GateReport:
        session = inference.make_session(model)
        held = self.held_out[:samples] if samples else self.held_out
        outputs = [inference.run_session(session, batch) for batch in held]
        return gate.evaluate(
            self.config.task,
            self.metric,
            self.config.gate.max_drop,
            self.reference[: len(held)],
            outputs,
            [batch["attention_mask"] for batch in held],
        )

    def time_model(self, model: Path) -> dict[str, Latency]:
        session = inference.make_session(model)
        return {
            case.label: measure(
                lambda c=case: inference.run_session(session, c.batch), case.size, case.sequence
            )
            for case in self.cases
        }

    def time_pytorch(self) -> dict[str, Latency]:
        return {
            case.label: measure(
                lambda c=case: inference.run_torch(self.wrapper, c.batch), case.size, case.sequence
            )
            for case in self.cases
        }
