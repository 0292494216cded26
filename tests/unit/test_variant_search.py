"""The int8 search keeps as few nodes in fp32 as the gate allows (each one costs speed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kubeformer_builder.config import Precision
from kubeformer_builder.errors import GateError
from kubeformer_builder.gate import GateReport
from kubeformer_builder.variants import Candidate, VariantSearch, _exclusion_steps, choose


def search_where_passing_needs(threshold: int, tried: list[int]) -> VariantSearch:
    """A search whose gate passes once the `threshold` most sensitive nodes stay fp32."""
    search = object.__new__(VariantSearch)

    def keeping(exclude):
        tried.append(len(exclude))
        return [SimpleNamespace(passed=len(exclude) >= threshold, kept=len(exclude))]

    search._keeping = keeping
    return search


def test_bisects_to_the_fewest_kept_nodes():
    ranking = [f"node{i}" for i in range(40)]
    for threshold in (3, 5, 7, 8):
        tried: list[int] = []
        search = search_where_passing_needs(threshold, tried)
        failing = max(step for step in _exclusion_steps(40) if step < threshold)
        passing = min(step for step in _exclusion_steps(40) if step >= threshold)
        found = search._fewest_kept(ranking, failing, passing, search._keeping(ranking[:passing]))
        assert found[0].kept == threshold, (threshold, tried)
        assert len(tried) <= 1 + passing.bit_length()


def test_exclusion_steps_double_up_to_half():
    assert _exclusion_steps(40) == [1, 2, 4, 8, 16]
    assert _exclusion_steps(1) == [1]
    assert _exclusion_steps(0) == []


class BrokenEngineEvaluator:
    """An evaluator whose engine for `broken` cannot be built."""

    def __init__(self, broken):
        self.broken = broken

    def runner(self, path, precision):
        if path == self.broken:
            raise RuntimeError("engine build failed\nwith detail")
        return (lambda batch: ()), path

    def check(self, run, samples=None):
        return GateReport(metric="cosine", score=1.0, drop=0.0, max_drop=0.01, max_abs_diff=0.0, samples=1)

    def check_graph(self, path):
        return None  # ONNX Runtime: the graph is the engine, judged by check()

    def time_runner(self, run):
        return {"single": SimpleNamespace(p50_ms=1.0)}


def test_a_candidate_that_cannot_be_built_is_rejected_not_fatal(tmp_path):
    search = object.__new__(VariantSearch)
    search.evaluator, search.tried = BrokenEngineEvaluator(tmp_path / "int8"), []
    broken = search.judge(Candidate("int8-static", Precision.INT8, tmp_path / "int8"))
    fine = search.judge(Candidate("fp32", Precision.FP32, tmp_path / "fp32"))
    assert not broken.passed and broken.error == "RuntimeError: engine build failed"
    assert broken.to_dict({})["error"] == "RuntimeError: engine build failed"
    baseline = {"single": SimpleNamespace(p50_ms=2.0)}
    assert choose([broken, fine], baseline, Precision.AUTO) is fine
    with pytest.raises(
        GateError, match=r"int8-static: could not be built \(RuntimeError: engine build failed\)"
    ):
        choose([broken], baseline, Precision.INT8)
