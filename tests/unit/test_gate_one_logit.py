"""The gate of a one-logit classifier (regression, cross-encoder score): a numeric metric, not argmax."""

import numpy as np
import pytest

from kubeformer_builder.config import GateMetric, Task
from kubeformer_builder.gate import ONE_LOGIT_METRIC, evaluate, one_logit_score

REFERENCE = np.linspace(-2.0, 3.0, 16, dtype=np.float32).reshape(-1, 1)


def report(candidate: np.ndarray, max_drop: float = 0.01):
    halves = [REFERENCE[:8], REFERENCE[8:]]
    candidates = [candidate[:8], candidate[8:]]
    masks = [np.ones((8, 4), dtype=np.int64)] * 2
    return evaluate(
        Task.TEXT_CLASSIFICATION,
        GateMetric.AGREEMENT,
        max_drop,
        [(h,) for h in halves],
        [(c,) for c in candidates],
        masks,
    )


def test_a_close_candidate_passes_with_the_metric_named():
    result = report(REFERENCE + 1e-4)
    assert result.metric == ONE_LOGIT_METRIC
    assert result.passed and result.samples == 16
    assert result.max_abs_diff == pytest.approx(1e-4, rel=1e-2)


@pytest.mark.parametrize(
    "wrong",
    [
        100.0 - REFERENCE,  # argmax of one column always agrees; this must still fail
        REFERENCE * 2.0,  # perfectly correlated, wrong scale
        REFERENCE + 0.5,  # perfectly correlated, shifted
        np.random.default_rng(0).permutation(REFERENCE),  # same values, wrong texts
        np.full_like(REFERENCE, np.nan),
    ],
)
def test_wrong_scores_fail(wrong):
    assert not report(wrong).passed


def test_constant_columns_compare_by_value():
    assert one_logit_score(np.ones(4), np.ones(4)) == 1.0
    assert one_logit_score(np.ones(4), np.zeros(4)) == 0.0
