import numpy as np
import pytest

from kubeformer_builder.config import GateMetric, Task
from kubeformer_builder.errors import ConfigError
from kubeformer_builder.gate import (
    NEIGHBOURS_COSINE_FLOOR,
    NEIGHBOURS_MAX_DROP,
    accuracy,
    answer_exact_match,
    answer_f1,
    cosine_rows,
    default_max_drop,
    entity_f1,
    evaluate,
    labeled_report,
    neighbour_agreement,
    normalize_answer,
    resolve_metric,
    tag_entities,
)


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
    assert resolve_metric(Task.FEATURE_EXTRACTION, None) is GateMetric.NEIGHBOURS
    assert resolve_metric(Task.QUESTION_ANSWERING, None) is GateMetric.AGREEMENT
    assert resolve_metric(Task.TEXT_CLASSIFICATION, None, labeled=True) is GateMetric.ACCURACY
    assert resolve_metric(Task.TOKEN_CLASSIFICATION, None, labeled=True) is GateMetric.F1
    assert (
        resolve_metric(Task.QUESTION_ANSWERING, GateMetric.EXACT_MATCH, labeled=True)
        is GateMetric.EXACT_MATCH
    )
    assert (
        resolve_metric(Task.TEXT_CLASSIFICATION, GateMetric.AGREEMENT, labeled=True) is GateMetric.AGREEMENT
    )
    with pytest.raises(ConfigError, match="'agreement' does not judge feature-extraction"):
        resolve_metric(Task.FEATURE_EXTRACTION, GateMetric.AGREEMENT)
    with pytest.raises(ConfigError, match=r"'accuracy' does not judge text-classification \(with labeled"):
        resolve_metric(Task.TEXT_CLASSIFICATION, GateMetric.ACCURACY)
    with pytest.raises(ConfigError, match="'exact_match' does not judge token-classification"):
        resolve_metric(Task.TOKEN_CLASSIFICATION, GateMetric.EXACT_MATCH, labeled=True)
    with pytest.raises(
        ConfigError, match=r"optimization\.evaluation: feature-extraction outputs have no labels"
    ):
        resolve_metric(Task.FEATURE_EXTRACTION, None, labeled=True)
    assert default_max_drop(GateMetric.NEIGHBOURS) == NEIGHBOURS_MAX_DROP
    assert default_max_drop(GateMetric.ACCURACY) == 0.01


def test_neighbours_counts_kept_nearest_neighbours():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(40, 8))
    assert np.all(neighbour_agreement(reference, reference * 2.0) == 1.0)  # scale does not move neighbours
    noisy = reference + rng.normal(scale=0.5, size=reference.shape)
    values = neighbour_agreement(reference, noisy, k=5)
    assert values.shape == (40,) and 0.0 < values.mean() < 1.0
    assert set(np.round(values * 5).astype(int)) <= set(range(6))  # a share of 5 neighbours
    points = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    swapped = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])  # text 0's nearest neighbour changes
    assert list(neighbour_agreement(points, swapped, k=1)) == [0.0, 0.0, 0.0]
    report = evaluate(
        Task.FEATURE_EXTRACTION, GateMetric.NEIGHBOURS, 0.1, [(reference[:20],), (reference[20:],)],
        [(reference[:20],), (noisy[20:],)], [np.ones((20, 4)), np.ones((20, 4))],
    )  # fmt: skip
    assert report.samples == 40 and report.drop == pytest.approx(1.0 - report.score)
    with pytest.raises(ConfigError, match="at least 2"):
        neighbour_agreement(reference[:1], reference[:1])


def test_accuracy_and_labeled_report_in_points():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 3.0]])
    assert accuracy(np.array([0, 1, 1, 1]), logits) == 0.75
    report = labeled_report(GateMetric.ACCURACY, 0.9, 0.896, 0.004, 0.5, 500)
    assert report.passed and report.drop == pytest.approx(0.004)
    assert report.to_dict()["points"] == {"fp32": 90.0, "variant": 89.6, "drop": 0.4}
    assert not labeled_report(GateMetric.ACCURACY, 0.9, 0.894, 0.004, 0.5, 500).passed
    better = labeled_report(GateMetric.ACCURACY, 0.9, 0.92, 0.0, 0.5, 500)
    assert better.passed and better.drop < 0
    assert (
        "reference_score"
        not in evaluate(
            Task.TEXT_CLASSIFICATION, GateMetric.AGREEMENT, 0.1, [(logits,)], [(logits,)], [np.ones((4, 2))]
        ).to_dict()
    )


@pytest.mark.parametrize(
    ("tags", "entities"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
        (["I-PER", "I-PER", "B-PER", "O"], [("PER", 0, 1), ("PER", 2, 2)]),  # IOB1
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),  # a type change starts a chunk
        (["S-PER", "B-LOC", "E-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]),  # IOBES
        (["PER", "PER", "O", "ORG"], [("PER", 0, 1), ("ORG", 3, 3)]),  # IO without prefixes
        (["O", "O"], []),
    ],
)
def test_tag_entities_chunk_like_conlleval(tags, entities):
    assert tag_entities(tags) == entities


def test_entity_f1_is_micro_averaged_over_exact_matches():
    gold = [{("PER", 0, 1), ("LOC", 3, 3)}, {("ORG", 0, 0)}]
    predicted = [{("PER", 0, 1), ("LOC", 2, 3)}, {("ORG", 0, 0), ("PER", 2, 2)}]
    # 2 hits of 4 predicted and 3 gold: precision 0.5, recall 2/3
    assert entity_f1(gold, predicted) == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert entity_f1([set()], [set()]) == 1.0 and entity_f1([{("PER", 0, 0)}], [set()]) == 0.0


def test_squad_exact_match_and_f1():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert answer_exact_match("the Eiffel tower", ["Eiffel Tower.", "Paris"]) == 1.0
    assert answer_exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert answer_f1("Eiffel", ["Eiffel Tower", "tower in Paris"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert answer_f1("", ["a"]) == 1.0  # both normalize to nothing, as in SQuAD's script
    assert answer_f1("Berlin", ["Paris"]) == 0.0


def test_neighbours_also_fails_embeddings_that_moved_away_from_the_reference():
    """Embeddings pushed away from the reference's (a large common offset) fail on the cosine floor,
    whatever their neighbour agreement."""
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(40, 16))
    moved = reference + 3.0 * np.linalg.norm(reference, axis=1, keepdims=True) * np.eye(16)[0]
    masks = [np.ones((40, 4))]
    same = evaluate(
        Task.FEATURE_EXTRACTION, GateMetric.NEIGHBOURS, 0.075, [(reference,)], [(reference,)], masks
    )
    assert same.passed and same.mean_cosine == pytest.approx(1.0)
    report = evaluate(
        Task.FEATURE_EXTRACTION, GateMetric.NEIGHBOURS, 0.075, [(reference,)], [(moved,)], masks
    )
    assert report.mean_cosine < NEIGHBOURS_COSINE_FLOOR and report.moved and not report.passed
    assert report.to_dict()["mean_cosine"] == report.mean_cosine
