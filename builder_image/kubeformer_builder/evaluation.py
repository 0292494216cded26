"""Everything a variant is judged by: gate outputs against fp32 PyTorch and latency, on fixed inputs.

Built once per build from the held-out texts, so every variant sees identical inputs, and inputs the
served model can get: batches of at most `shapes.batch.max` texts, padded to at least
`shapes.sequence.min` tokens (a TensorRT engine refuses anything outside its profile).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kubeformer_builder import gate, inference
from kubeformer_builder.config import Backend, BuildConfig, GateMetric, Precision
from kubeformer_builder.tasks import ExportWrapper
from kubeformer_builder.timing import Latency, measure

Runner = Callable[[inference.Batch], tuple[np.ndarray, ...]]
_GATE_BATCH = 8  # texts per gate batch, unless the profile allows fewer


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
    """Reference outputs of fp32 PyTorch and the timing inputs for one build."""

    def __init__(self, wrapper: ExportWrapper, tokenizer, config: BuildConfig, held_out: tuple[str, ...]):
        self.wrapper, self.config = wrapper, config
        self.metric: GateMetric = gate.resolve_metric(config.task, config.gate.metric)
        shapes = config.shapes
        size = min(_GATE_BATCH, shapes.batch.max)
        batches = inference.batches(
            tokenizer, config.task, held_out, wrapper.input_names, shapes.sequence.max, size
        )
        pad_id = tokenizer.pad_token_id or 0
        self.held_out = [_pad_to(batch, shapes.sequence.min, pad_id) for batch in batches]
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
        return gate.evaluate(
            self.config.task,
            self.metric,
            self.config.gate.max_drop,
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
