import numpy as np
import pytest

from kubeformer_builder.config import GateMetric, Task
from kubeformer_builder.errors import ConfigError
from kubeformer_builder.gate import cosine_rows, evaluate, resolve_metric


def test_label_agreement_counts_flipped_predictions():
    reference = [(np.array([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [1.0, 2.0]]),)]
    candidate = [(np.array([[2.0, 1.5], [1.0, 0.0], [3.0, 0.0], [1.0, 2.0]]),)]
    report = evaluate(
        Task.TEXT_CLASSIFICATION, GateMetric.AGREEMENT, 0.2, reference, candidate, [np.ones((4, 3))]
    )
    assert report.score == 0.75 and report.drop == 0.25 and not report.passed
    assert report.max_abs_diff == 1.0


def test_token_agreement_ignores_padding():
    logits = np.zeros((1, 3, 2))
    logits[0, :, 0] = 1.0
    flipped = logits.copy()
    flipped[0, 2] = [0.0, 1.0]  # differs only on the padded position
    mask = np.array([[1, 1, 0]])
    report = evaluate(Task.TOKEN_CLASSIFICATION, GateMetric.AGREEMENT, 0.0, [(logits,)], [(flipped,)], [mask])
    assert report.passed and report.score == 1.0


def test_span_agreement_needs_start_and_end():
    start, end = np.array([[0.0, 5.0, 0.0]]), np.array([[0.0, 0.0, 5.0]])
    moved_end = np.array([[0.0, 5.0, 0.0]])
    report = evaluate(
        Task.QUESTION_ANSWERING,
        GateMetric.AGREEMENT,
        0.0,
        [(start, end)],
        [(start, moved_end)],
        [np.ones((1, 3))],
    )
    assert report.score == 0.0


def test_cosine_of_embeddings():
    reference = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert np.allclose(cosine_rows(reference, reference * 3), [1.0, 1.0])
    candidate = np.array([[1.0, 1.0], [0.0, 1.0]])
    report = evaluate(
        Task.FEATURE_EXTRACTION, GateMetric.COSINE, 0.01, [(reference,)], [(candidate,)], [np.ones((2, 4))]
    )
    assert report.score == pytest.approx((np.sqrt(0.5) + 1.0) / 2)


def test_metric_defaults_and_refusals():
    assert resolve_metric(Task.FEATURE_EXTRACTION, None) is GateMetric.COSINE
    assert resolve_metric(Task.QUESTION_ANSWERING, None) is GateMetric.AGREEMENT
    with pytest.raises(ConfigError, match="embeddings use 'cosine'"):
        resolve_metric(Task.FEATURE_EXTRACTION, GateMetric.AGREEMENT)
    with pytest.raises(ConfigError, match="'accuracy' needs labelled"):
        resolve_metric(Task.TEXT_CLASSIFICATION, GateMetric.ACCURACY)
