"""Timing statistics as pure functions: medians, block spread, paired ratios and the noisy flag."""

from __future__ import annotations

import pytest

from kubeformer_builder import timing
from kubeformer_builder.timing import Latency, inconsistent_shapes, measure_interleaved, speedup, summarize


def steady(ms: float, rounds: int = 5, calls: int = 10) -> list[list[float]]:
    """Blocks of call times within 2% of `ms`."""
    return [[ms * (1 + 0.02 * ((i + r) % 3 - 1)) for i in range(calls)] for r in range(rounds)]


def test_summarize_reports_the_median_and_per_block_medians():
    latency = summarize([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], batch=1, sequence=16)
    assert latency.p50_ms == 3.5 and latency.iterations == 6
    assert latency.block_p50_ms == (2.0, 5.0)
    assert latency.spread == pytest.approx((5.0 - 2.0) / 3.5)
    assert latency.to_dict()["block_p50_ms"] == {"min": 2.0, "max": 5.0}


def test_summarize_without_any_call_is_an_error():
    with pytest.raises(ValueError, match="no timed calls"):
        summarize([[], []], 1, 16)


def test_steady_blocks_are_not_noisy():
    latency = summarize(steady(10.0), 1, 16)
    assert not latency.noisy and latency.noise == ()
    assert latency.to_dict()["noisy"] is False


def test_blocks_that_disagree_are_noisy():
    blocks = steady(10.0)
    blocks[2] = [300.0] * 10  # one round on a busy machine
    latency = summarize(blocks, 1, 16)
    assert latency.noisy and "block medians spread" in latency.noise[0]


def test_a_long_tail_is_noisy_even_when_medians_agree():
    blocks = [[10.0] * 18 + [80.0, 90.0] for _ in range(5)]  # 10% of calls 8-9x slower
    latency = summarize(blocks, 1, 16)
    assert latency.spread == 0.0 and latency.p95_ms / latency.p50_ms > timing.MAX_TAIL
    assert latency.noisy and "p95/p50" in latency.noise[0]


def test_speedup_pairs_rounds_and_takes_the_median_ratio():
    base = summarize([[20.0], [22.0], [40.0], [21.0], [20.0]], 1, 16)
    fast = summarize([[2.0], [2.2], [4.0], [2.1], [2.0]], 1, 16)  # the busy round hit both
    ratio = speedup(base, fast)
    assert ratio.value == pytest.approx(10.0) and ratio.low == pytest.approx(10.0)
    assert not any("ratios" in reason for reason in ratio.noise)  # pairing cancelled the busy round
    assert ratio.noisy  # but the latencies themselves are still reported as disturbed


def test_an_absurd_ratio_is_flagged_not_trusted():
    # The case: PyTorch 302.7 ms in one round, a few ms in the others.
    base = summarize([[3.0], [302.7], [3.1], [2.9], [3.0]], 1, 16)
    fast = summarize([[1.0], [1.0], [1.0], [1.0], [1.0]], 1, 16)
    ratio = speedup(base, fast)
    assert ratio.noisy and ratio.high == pytest.approx(302.7)
    assert any(reason.startswith("PyTorch: ") for reason in ratio.noise)
    assert any("per-round ratios spread" in reason for reason in ratio.noise)
    assert ratio.to_dict()["noisy"] is True


def test_speedup_of_unpaired_latencies_uses_the_medians():
    base, fast = Latency(1, 16, 10.0, 11.0, 5), Latency(1, 16, 2.0, 2.2, 5)
    ratio = speedup(base, fast)
    assert ratio.value == 5.0 and not ratio.noisy


def test_speedup_against_a_zero_latency_is_noisy():
    assert speedup(Latency(1, 16, 10.0, 11.0, 5), Latency(1, 16, 0.0, 0.0, 5)).noisy


def test_a_single_request_slower_than_a_batch_is_inconsistent():
    single, batched = Latency(1, 128, 302.7, 310.0, 5), Latency(8, 128, 27.0, 28.0, 5)
    assert "batch 1 p50 302.70 ms > batch 8 p50 27.00 ms" in inconsistent_shapes(single, batched)[0]
    assert inconsistent_shapes(Latency(1, 128, 5.0, 6.0, 5), batched) == ()


def test_relative_spread_edges():
    assert timing.relative_spread([]) == 0.0 and timing.relative_spread([3.0]) == 0.0
    assert timing.relative_spread([0.0, 0.0, 1.0]) == float("inf")


def test_measure_interleaved_alternates_the_order_of_every_round():
    order: list[str] = []
    calls = {name: (lambda n=name: order.append(n)) for name in ("a", "b")}
    found = measure_interleaved(calls, 1, 16, rounds=4, warmup=1, smallest_block=2, largest_block=2)
    assert order[:2] == ["a", "b"]  # warmup
    assert order[2:] == ["a", "a", "b", "b", "b", "b", "a", "a"] * 2
    assert {name: len(latency.block_p50_ms) for name, latency in found.items()} == {"a": 4, "b": 4}
    assert all(latency.iterations == 8 for latency in found.values())
