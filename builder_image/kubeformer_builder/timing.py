"""Latency measurement shared by variant selection and `kubeformer bench`: warmup, then timed runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Latency:
    batch: int
    sequence: int
    p50_ms: float
    p95_ms: float
    iterations: int

    @property
    def throughput(self) -> float:
        """Sequences per second at the median latency."""
        return self.batch * 1000.0 / self.p50_ms if self.p50_ms > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "batch": self.batch,
            "sequence": self.sequence,
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "throughput": round(self.throughput, 2),
            "iterations": self.iterations,
        }


def measure(
    call: Callable[[], object],
    batch: int,
    sequence: int,
    warmup: int = 3,
    budget_s: float = 3.0,
    max_iter: int = 200,
) -> Latency:
    """Time `call` until the budget or max_iter is spent (at least 5 runs), after warmup."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < 5 or (len(samples) < max_iter and time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0)
    values = np.asarray(samples)
    return Latency(
        batch, sequence, float(np.percentile(values, 50)), float(np.percentile(values, 95)), len(samples)
    )
