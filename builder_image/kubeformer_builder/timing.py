"""Latency measurement shared by variant selection and `kubeformer bench`.

Everything compared in one measurement (PyTorch and the variants) runs interleaved: after a
warmup, each round runs one block of timed calls per contender, in A B C then C B A order, so
that a busy neighbour or a clock change hits every contender alike. A latency is the median over
all timed calls with the spread of its per-block medians; a speedup is the median of the
per-round ratios, paired within a round. A measurement whose blocks disagree, whose tail is far
from its median, or whose ratios disagree across rounds is flagged noisy: it is reported, but a
noisy ratio is not published as a speedup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Relative spread ((max - min) / median) of block medians or per-round ratios above which a
# measurement is noisy: on a quiet machine blocks agree within a few percent.
MAX_SPREAD = 0.25
# p95 / p50 above which the tail says the machine was busy, not that the model is slow.
MAX_TAIL = 3.0
ROUNDS = 5


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median of `values`; 0.0 for fewer than two values, inf for a median of 0."""
    if len(values) < 2:
        return 0.0
    middle = float(np.median(values))
    return (max(values) - min(values)) / middle if middle > 0 else float("inf")


@dataclass(frozen=True)
class Latency:
    """One contender's latency at one shape: milliseconds per call of `batch` x `sequence` tokens."""

    batch: int
    sequence: int
    p50_ms: float  # median over every timed call
    p95_ms: float
    iterations: int
    block_p50_ms: tuple[float, ...] = ()  # the median of each round's block, in round order

    @property
    def throughput(self) -> float:
        """Sequences per second at the median latency."""
        return self.batch * 1000.0 / self.p50_ms if self.p50_ms > 0 else 0.0

    @property
    def spread(self) -> float:
        """Relative spread of the block medians (0.1 = blocks within 10% of the median)."""
        return relative_spread(self.block_p50_ms)

    @property
    def noise(self) -> tuple[str, ...]:
        """Why this measurement is not to be trusted; empty when it is."""
        reasons = []
        if self.spread > MAX_SPREAD:
            reasons.append(f"block medians spread {self.spread:.0%} > {MAX_SPREAD:.0%}")
        if self.p50_ms > 0 and self.p95_ms / self.p50_ms > MAX_TAIL:
            reasons.append(f"p95/p50 {self.p95_ms / self.p50_ms:.1f} > {MAX_TAIL}")
        return tuple(reasons)

    @property
    def noisy(self) -> bool:
        return bool(self.noise)

    def to_dict(self) -> dict:
        blocks = self.block_p50_ms or (self.p50_ms,)
        return {
            "batch": self.batch,
            "sequence": self.sequence,
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "throughput": round(self.throughput, 2),
            "iterations": self.iterations,
            "block_p50_ms": {"min": round(min(blocks), 3), "max": round(max(blocks), 3)},
            "spread": round(self.spread, 4),
            "noisy": self.noisy,
            "noise": list(self.noise),
        }


def summarize(blocks: Sequence[Sequence[float]], batch: int, sequence: int) -> Latency:
    """A Latency from per-round blocks of call times in ms. Raises ValueError without any time."""
    samples = np.asarray([t for block in blocks for t in block], dtype=np.float64)
    if samples.size == 0:
        raise ValueError("summarize: no timed calls")
    medians = tuple(float(np.median(block)) for block in blocks if len(block))
    return Latency(
        batch,
        sequence,
        float(np.percentile(samples, 50)),
        float(np.percentile(samples, 95)),
        int(samples.size),
        medians,
    )


@dataclass(frozen=True)
class Speedup:
    """How many times faster `candidate` ran than `baseline`, from rounds paired in time."""

    value: float  # median of the per-round ratios
    low: float
    high: float
    noise: tuple[str, ...]

    @property
    def noisy(self) -> bool:
        return bool(self.noise)

    def to_dict(self) -> dict:
        return {
            "value": round(self.value, 3),
            "low": round(self.low, 3),
            "high": round(self.high, 3),
            "noisy": self.noisy,
            "noise": list(self.noise),
        }


def speedup(baseline: Latency, candidate: Latency) -> Speedup:
    """baseline / candidate, per round when both have the same rounds, else of the medians."""
    paired = len(baseline.block_p50_ms) == len(candidate.block_p50_ms) > 0
    if paired:
        ratios = [b / c for b, c in zip(baseline.block_p50_ms, candidate.block_p50_ms, strict=True) if c > 0]
    else:
        ratios = [baseline.p50_ms / candidate.p50_ms] if candidate.p50_ms > 0 else []
    if not ratios:
        return Speedup(0.0, 0.0, 0.0, ("candidate latency is 0",))
    noise = [f"PyTorch: {reason}" for reason in baseline.noise]
    noise += [f"variant: {reason}" for reason in candidate.noise]
    spread = relative_spread(ratios)
    if spread > MAX_SPREAD:
        noise.append(f"per-round ratios spread {spread:.0%} > {MAX_SPREAD:.0%}")
    return Speedup(float(np.median(ratios)), min(ratios), max(ratios), tuple(noise))


def inconsistent_shapes(single: Latency, batched: Latency) -> tuple[str, ...]:
    """A single request that takes longer than a whole batch at the same sequence was disturbed."""
    if batched.batch > single.batch and single.p50_ms > batched.p50_ms:
        return (f"batch {single.batch} p50 {single.p50_ms:.2f} ms > batch {batched.batch} p50 "
                f"{batched.p50_ms:.2f} ms",)  # fmt: skip
    return ()


def _block_size(seconds_per_call: float, block_budget_s: float, smallest: int, largest: int) -> int:
    if seconds_per_call <= 0:
        return largest
    return int(min(largest, max(smallest, block_budget_s // seconds_per_call)))


def measure_interleaved(
    calls: Mapping[str, Callable[[], object]],
    batch: int,
    sequence: int,
    budget_s: float = 3.0,
    rounds: int = ROUNDS,
    warmup: int = 3,
    smallest_block: int = 3,
    largest_block: int = 40,
) -> dict[str, Latency]:
    """Time every call in `calls` interleaved: `rounds` rounds of one block each, order alternating.

    `budget_s` is each contender's timing budget over all rounds (its block size is set from its
    warmup time, between smallest_block and largest_block calls). Returns a Latency per name.
    """
    sizes = {}
    for name, call in calls.items():
        for _ in range(max(1, warmup)):  # at least one call estimates the block size
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
        sizes[name] = _block_size(elapsed, budget_s / rounds, smallest_block, largest_block)
    blocks: dict[str, list[list[float]]] = {name: [] for name in calls}
    order = list(calls)
    for round_index in range(rounds):
        for name in order if round_index % 2 == 0 else reversed(order):
            call, block = calls[name], []
            for _ in range(sizes[name]):
                start = time.perf_counter()
                call()
                block.append((time.perf_counter() - start) * 1000.0)
            blocks[name].append(block)
    return {name: summarize(blocks[name], batch, sequence) for name in calls}
