"""Post-processing of raw outputs into labels, entities and answer spans."""

from __future__ import annotations

import numpy as np
import pytest

from kubeformer_builder.serving.answers import (
    MAX_ANSWER_TOKENS,
    NONE,
    SIGMOID,
    SOFTMAX,
    aggregate_entities,
    best_answer,
    classify,
    score_function,
)

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def one_hot(ids: list[int], size: int = 5) -> np.ndarray:
    logits = np.full((len(ids), size), -5.0)
    logits[np.arange(len(ids)), ids] = 5.0
    return logits


def test_classify_orders_labels_by_probability():
    result = classify(np.array([0.0, 2.0, 1.0]), {0: "neg", 1: "neu", 2: "pos"})
    assert [r["label"] for r in result] == ["neu", "pos", "neg"]
    assert sum(r["score"] for r in result) == pytest.approx(1.0)
    assert [r["logit"] for r in result] == [2.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("problem_type", "num_labels", "expected"),
    [
        (None, 1, SIGMOID),
        (None, 3, SOFTMAX),
        ("single_label_classification", 3, SOFTMAX),
        ("multi_label_classification", 3, SIGMOID),
        ("regression", 1, NONE),
        (None, 0, NONE),
    ],
)
def test_score_function_follows_the_head_as_transformers_does(problem_type, num_labels, expected):
    assert score_function(problem_type, num_labels) == expected


def test_one_logit_gets_a_sigmoid_score_and_keeps_its_raw_logit():
    (answer,) = classify(np.array([0.5]), {0: "LABEL_0"}, SIGMOID)
    assert answer["score"] == pytest.approx(1 / (1 + np.exp(-0.5)))
    assert answer["logit"] == 0.5


def test_multi_label_scores_are_independent_and_regression_is_raw():
    logits = np.array([0.024, 0.016, 0.008])
    labels = {0: "a", 1: "b", 2: "c"}
    assert [r["score"] for r in classify(logits, labels, SIGMOID)] == pytest.approx(
        [0.506, 0.504, 0.502], abs=1e-3
    )
    assert [r["score"] for r in classify(np.array([-3.5]), {0: "y"}, NONE)] == [-3.5]
    with pytest.raises(ValueError, match="tanh"):
        classify(logits, labels, "tanh")


def test_entities_join_subwords_and_split_on_b_labels():
    text = "Ada Lovelace met Bob in Londonderry"
    # [CLS] Ada Love ##lace met Bob in London ##derry [SEP]
    offsets = np.array(
        [[-1, -1], [0, 3], [4, 8], [8, 12], [13, 16], [17, 20], [21, 23], [24, 30], [30, 35], [-1, -1]]
    )
    labels = [0, 1, 2, 2, 0, 1, 0, 3, 4, 0]
    entities = aggregate_entities(text, one_hot(labels), offsets, LABELS)
    assert [(e["entity_group"], e["word"]) for e in entities] == [
        ("PER", "Ada Lovelace"),
        ("PER", "Bob"),
        ("LOC", "Londonderry"),
    ]
    assert all(0.99 < e["score"] <= 1 for e in entities)


def test_adjacent_b_labels_are_separate_entities():
    text = "Ann Bo"
    offsets = np.array([[0, 3], [4, 6]])
    entities = aggregate_entities(text, one_hot([1, 1]), offsets, LABELS)
    assert [e["word"] for e in entities] == ["Ann", "Bo"]


def test_a_b_label_starts_a_new_entity_even_inside_a_word():
    # CJK has no spaces: 张 三 李 四 tagged B-PER I-PER B-PER I-PER are two people (transformers "simple").
    offsets = np.array([[-1, -1], [0, 1], [1, 2], [2, 3], [3, 4], [-1, -1]])
    entities = aggregate_entities("张三李四", one_hot([0, 1, 2, 1, 2, 0]), offsets, LABELS)
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in entities] == [
        ("PER", "张三", 0, 2),
        ("PER", "李四", 2, 4),
    ]
    # The same for sub-tokens of one word: Lon ##don tagged B-LOC B-LOC are two groups, as transformers.
    entities = aggregate_entities("London", one_hot([3, 3]), np.array([[0, 3], [3, 6]]), LABELS)
    assert [e["word"] for e in entities] == ["Lon", "don"]


def test_labels_without_bio_prefix_continue_and_o_is_dropped():
    labels = {0: "O", 1: "PER"}
    offsets = np.array([[0, 1], [1, 2], [3, 4]])
    entities = aggregate_entities("ab c", one_hot([1, 1, 0], size=2), offsets, labels)
    assert [(e["entity_group"], e["word"]) for e in entities] == [("PER", "ab")]


def test_best_answer_picks_the_most_likely_span_inside_the_context():
    context = "Paris is the capital of France"
    # [CLS] question tokens (-1) then context tokens Paris is the capital of France
    offsets = np.array([[-1, -1], [-1, -1], [0, 5], [6, 8], [9, 12], [13, 20], [21, 23], [24, 30], [-1, -1]])
    start = np.array([9.0, 9.0, 5.0, 0, 0, 0, 0, 0, 9.0])  # high logits outside the context must be ignored
    end = np.array([9.0, 9.0, 4.0, 0, 0, 0, 0, 0, 9.0])
    answer = best_answer(context, start[None], end[None], offsets[None])
    assert (answer["answer"], answer["start"], answer["end"]) == ("Paris", 0, 5)
    assert 0 < answer["score"] <= 1


def test_best_answer_never_ends_before_it_starts_nor_runs_too_long():
    count = MAX_ANSWER_TOKENS + 10
    offsets = np.array([[i, i + 1] for i in range(count)])
    start = np.zeros(count)
    end = np.zeros(count)
    start[count - 1], end[0] = 10.0, 10.0  # the best "pair" would end before it starts
    answer = best_answer("x" * count, start[None], end[None], offsets[None])
    assert answer["start"] < answer["end"]
    start[:] = 0
    start[0], end[count - 1] = 10.0, 10.0  # longer than the limit
    answer = best_answer("x" * count, start[None], end[None], offsets[None])
    assert answer["end"] - answer["start"] <= MAX_ANSWER_TOKENS


def test_best_answer_without_context_tokens_is_empty():
    assert best_answer("", np.zeros((1, 2)), np.zeros((1, 2)), np.full((1, 2, 2), -1))["answer"] == ""


@pytest.mark.parametrize("seed", range(5))
def test_each_window_is_scored_as_transformers_select_starts_ends(seed):
    from transformers.pipelines.document_question_answering import select_starts_ends

    rng = np.random.default_rng(seed)
    length = 24
    # [CLS] 3 question tokens [SEP] context tokens [SEP] padding
    sequence = [None, 0, 0, 0, None] + [1] * 14 + [None] + [None] * 4
    offsets = np.full((length, 2), -1)
    offsets[0] = -2  # CLS
    offsets[5:19] = [[2 * i, 2 * i + 1] for i in range(14)]
    start, end = rng.normal(size=(2, length)).astype(np.float32) * 3
    p_mask = np.array([s != 1 for s in sequence], dtype=np.int64)
    p_mask[0] = 0  # the pipeline keeps CLS unmasked
    attention = np.array([1] * 20 + [0] * 4)
    starts, ends, scores, _ = select_starts_ends(start[None], end[None], p_mask, attention, max_answer_len=15)
    answer = best_answer("ab" * 14, start[None], end[None], offsets[None])
    assert (answer["start"], answer["end"]) == (offsets[starts[0], 0], offsets[ends[0], 1])
    assert answer["score"] == pytest.approx(float(scores[0]), rel=1e-5)


def test_the_best_window_wins_and_ties_keep_the_first():
    context = "aa bb cc dd"
    offsets = np.array([[[-2, -2], [0, 2], [3, 5]], [[-2, -2], [3, 5], [6, 8]], [[-2, -2], [6, 8], [9, 11]]])
    start = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    end = start.copy()
    assert best_answer(context, start, end, offsets)["answer"] == "dd"
    flat = np.zeros((3, 3))
    assert best_answer(context, flat, flat, offsets)["answer"] == "aa"
