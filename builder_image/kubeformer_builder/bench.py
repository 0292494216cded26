"""`kubeformer bench`: the PyTorch reference library, fp32, against every variant, same inputs, one run.

The candidates are the ones a build would try (plus plain unfused ONNX Runtime as the
reference point every speedup claim should beat); at every requested (batch, sequence) shape
they are timed interleaved with PyTorch (timing.measure_interleaved) and reported with the
spread of their rounds, a noisy flag and their accuracy delta from the gate.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from kubeformer_builder import calibration, inference
from kubeformer_builder.config import BuildConfig, Precision
from kubeformer_builder.evaluation import BASELINE
from kubeformer_builder.isa import host_cpu
from kubeformer_builder.pipeline import prepare
from kubeformer_builder.timing import Latency, Speedup, measure_interleaved, speedup
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
    speedup: Speedup | None  # None for PyTorch itself
    accuracy_drop: float | None
    gate_passed: bool | None

    @property
    def noisy(self) -> bool:
        return self.latency.noisy or (self.speedup is not None and self.speedup.noisy)

    def to_dict(self) -> dict:
        """One table row; `speedup` is null when noisy (its range and the reasons are beside it)."""
        ratio = self.speedup
        return {
            "variant": self.variant,
            "batch": self.batch,
            "sequence": self.sequence,
            "p50_ms": round(self.latency.p50_ms, 3),
            "p95_ms": round(self.latency.p95_ms, 3),
            "throughput": round(self.latency.throughput, 2),
            "spread": round(self.latency.spread, 4),
            "speedup": 1.0 if ratio is None else (None if ratio.noisy else round(ratio.value, 3)),
            "speedup_range": None if ratio is None else [round(ratio.low, 3), round(ratio.high, 3)],
            "noisy": self.noisy,
            "noise": list(ratio.noise if ratio else self.latency.noise),  # a ratio's includes both sides
            "accuracy_drop": None if self.accuracy_drop is None else round(self.accuracy_drop, 6),
            "gate_passed": self.gate_passed,
        }


def run_bench(config: BuildConfig, shapes=DEFAULT_SHAPES, budget_s: float = 4.0) -> dict:
    """PyTorch (the reference library) and every candidate, timed interleaved at each shape."""
    timings: dict[str, float] = {}
    search_config = (
        replace(config, precision=Precision.AUTO) if config.precision is Precision.AUTO else config
    )
    with tempfile.TemporaryDirectory(prefix="kubeformer-bench-") as scratch:
        workdir = Path(scratch)
        prepared = prepare(search_config, workdir, timings)
        search = VariantSearch(
            prepared.config,
            prepared.evaluator,
            prepared.fused,
            workdir / "v",
            prepared.calibration,
            host_cpu().isa,
        )
        search.judge(Candidate("onnxruntime-unfused", Precision.FP32, prepared.exported))
        candidates = search.run()  # includes the unfused reference judged above
        sessions = [inference.make_session(c.path) for c in candidates]
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
            calls = {BASELINE: lambda b=batch: prepared.evaluator.reference.run(b)}
            calls.update(
                {str(i): (lambda s=s, b=batch: inference.run_session(s, b)) for i, s in enumerate(sessions)}
            )
            found = measure_interleaved(calls, batch_size, sequence, budget_s=budget_s)
            base = found[BASELINE]
            rows.append(Row("pytorch-fp32", batch_size, sequence, base, None, 0.0, True))
            for i, candidate in enumerate(candidates):
                gate = candidate.gate
                rows.append(
                    Row(
                        candidate.name,
                        batch_size,
                        sequence,
                        found[str(i)],
                        speedup(base, found[str(i)]),
                        gate.drop if gate else None,
                        gate.passed if gate else None,
                    )
                )
    return {
        "model": config.source,
        "task": config.task.value,
        "threads": inference.cpu_threads(),
        "cpu": host_cpu().to_dict(),
        "reference": prepared.evaluator.reference.to_dict(),
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
        ratio = "noisy" if row["speedup"] is None else f"{row['speedup']:.2f}x"
        noise = f" (noisy: {'; '.join(row['noise'])})" if row["noisy"] else ""
        lines.append(
            f"{row['variant']:<28} {row['batch']:>3}x{row['sequence']:<4} "
            f"{row['p50_ms']:>9.2f} {row['p95_ms']:>9.2f} {row['throughput']:>9.1f} "
            f"{ratio:>8} {drop:>9} {gate}{noise}"
        )
    return "\n".join(lines)
