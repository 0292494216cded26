"""`kubeformer bench`: PyTorch eager fp32 against every variant, same inputs, one run.

The candidates are the ones a build would try (plus plain unfused ONNX Runtime as the
reference point every speedup claim should beat); each is timed at every requested
(batch, sequence) shape and reported with its accuracy delta from the gate.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from kubeformer_builder import calibration, inference
from kubeformer_builder.config import BuildConfig, Precision
from kubeformer_builder.pipeline import prepare
from kubeformer_builder.timing import Latency, measure
from kubeformer_builder.variants import Candidate, VariantSearch
from kubeformer_builder.versions import runtime_versions

log = logging.getLogger("kubeformer.bench")
DEFAULT_SHAPES = ((1, 16), (1, 128), (8, 128), (32, 128))


@dataclass(frozen=True)
class Row:
    variant: str
    batch: int
    sequence: int
    latency: Latency
    speedup: float
    accuracy_drop: float | None
    gate_passed: bool | None

    def to_dict(self) -> dict:
        return {
            "variant": self.variant,
            "batch": self.batch,
            "sequence": self.sequence,
            "p50_ms": round(self.latency.p50_ms, 3),
            "p95_ms": round(self.latency.p95_ms, 3),
            "throughput": round(self.latency.throughput, 2),
            "speedup": round(self.speedup, 3),
            "accuracy_drop": None if self.accuracy_drop is None else round(self.accuracy_drop, 6),
            "gate_passed": self.gate_passed,
        }


def run_bench(config: BuildConfig, shapes=DEFAULT_SHAPES, budget_s: float = 4.0) -> dict:
    timings: dict[str, float] = {}
    search_config = (
        replace(config, precision=Precision.AUTO) if config.precision is Precision.AUTO else config
    )
    with tempfile.TemporaryDirectory(prefix="kubeformer-bench-") as scratch:
        workdir = Path(scratch)
        prepared = prepare(search_config, workdir, timings)
        search = VariantSearch(
            search_config, prepared.evaluator, prepared.fused, workdir / "v", prepared.calibration
        )
        search.judge(Candidate("onnxruntime-unfused", Precision.FP32, prepared.exported))
        candidates = search.run()  # includes the unfused reference judged above
        texts = calibration.builtin_corpus()
        rows = []
        for batch_size, sequence in shapes:
            chosen = [texts[(i * 7) % len(texts)] * 8 for i in range(batch_size)]
            batch = inference.tokenize(
                prepared.tokenizer,
                config.task,
                chosen,
                prepared.wrapper.input_names,
                sequence,
                pad_to=sequence,
            )
            log.info("timing batch %d x sequence %d", batch_size, sequence)
            base = measure(
                lambda b=batch: inference.run_torch(prepared.wrapper, b),
                batch_size,
                sequence,
                budget_s=budget_s,
            )
            rows.append(Row("pytorch-eager-fp32", batch_size, sequence, base, 1.0, 0.0, True))
            for candidate in candidates:
                session = inference.make_session(candidate.path)
                latency = measure(
                    lambda s=session, b=batch: inference.run_session(s, b),
                    batch_size,
                    sequence,
                    budget_s=budget_s,
                )
                gate = candidate.gate
                rows.append(
                    Row(
                        candidate.name,
                        batch_size,
                        sequence,
                        latency,
                        base.p50_ms / latency.p50_ms,
                        gate.drop if gate else None,
                        gate.passed if gate else None,
                    )
                )
    return {
        "model": config.source,
        "task": config.task.value,
        "threads": inference.cpu_threads(),
        "gate": {"metric": prepared.evaluator.metric.value, "max_drop": prepared.evaluator.max_drop},
        "versions": runtime_versions(),
        "rows": [row.to_dict() for row in rows],
    }


def format_table(report: dict) -> str:
    columns = ("p50 ms", "p95 ms", "seq/s")
    header = (
        f"{'variant':<28} {'shape':>8} "
        + " ".join(f"{c:>9}" for c in columns)
        + f" {'speedup':>8} {'acc drop':>9} gate"
    )
    lines = [f"{report['model']} ({report['task']}, {report['threads']} threads)", header, "-" * len(header)]
    for row in report["rows"]:
        drop = "-" if row["accuracy_drop"] is None else f"{row['accuracy_drop']:.4f}"
        gate = {True: "pass", False: "FAIL", None: "-"}[row["gate_passed"]]
        lines.append(
            f"{row['variant']:<28} {row['batch']:>3}x{row['sequence']:<4} "
            f"{row['p50_ms']:>9.2f} {row['p95_ms']:>9.2f} {row['throughput']:>9.1f} "
            f"{row['speedup']:>7.2f}x {drop:>9} {gate}"
        )
    return "\n".join(lines)
