"""The int8 search keeps as few nodes in fp32 as the gate allows (each one costs speed)."""

from __future__ import annotations

from types import SimpleNamespace

from kubeformer_builder.variants import VariantSearch, _exclusion_steps


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
