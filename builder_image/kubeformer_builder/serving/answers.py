"""Turn raw ensemble outputs into answers people read: labels, entities, spans, embeddings.

Pure numpy functions of one text's outputs, so every task's post-processing is tested without Triton.
"""

from __future__ import annotations

import numpy as np

MAX_ANSWER_TOKENS = 30


# How a sequence classifier's logits become scores (transformers' ClassificationFunction names).
SIGMOID, SOFTMAX, NONE = "sigmoid", "softmax", "none"
SCORE_FUNCTIONS = (SIGMOID, SOFTMAX, NONE)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def score_function(problem_type: str | None, num_labels: int) -> str:
    """The function transformers' TextClassificationPipeline applies by default for this head.

    regression: none (raw scores); multi-label or a single logit: an independent sigmoid per label;
    otherwise softmax over the labels.
    """
    if problem_type == "regression":
        return NONE
    if problem_type == "multi_label_classification" or num_labels == 1:
        return SIGMOID
    return SOFTMAX if num_labels > 1 else NONE


def classify(logits: np.ndarray, id2label: dict[int, str], function: str = SOFTMAX) -> list[dict]:
    """Every label with its score (`function` of the float32 logits [N]) and raw logit, best first.

    Raises ValueError for a `function` outside SCORE_FUNCTIONS.
    """
    raw = np.asarray(logits, dtype=np.float32)
    if function == SIGMOID:
        scores = sigmoid(raw)
    elif function == SOFTMAX:
        scores = softmax(raw)
    elif function == NONE:
        scores = raw
    else:
        raise ValueError(f"score function {function!r}: expected one of {', '.join(SCORE_FUNCTIONS)}")
    order = np.argsort(-scores, kind="stable")
    return [
        {"label": id2label.get(int(i), str(int(i))), "score": float(scores[i]), "logit": float(raw[i])}
        for i in order
    ]


def _entity_tag(label: str) -> tuple[bool, str]:
    """(begins, type): (True, 'PER') for B-PER, (False, 'PER') for I-PER or a bare PER, as transformers."""
    if label[:2] in ("B-", "I-"):
        return label.startswith("B-"), label[2:]
    return False, label


def aggregate_entities(
    text: str, logits: np.ndarray, offsets: np.ndarray, id2label: dict[int, str]
) -> list[dict]:
    """Group token predictions into entities exactly as transformers' TokenClassificationPipeline
    with aggregation_strategy="simple" does.

    logits: float [T, N]; offsets: int [T, 2] character spans, -1 for special and padding tokens.
    Each real token takes its most probable label (softmax score); consecutive tokens join one group
    while the type stays the same and the label is not a B- one (so B-PER I-PER B-PER I-PER is two
    entities even without a space between them); groups of type O are dropped. Returns dicts with
    entity_group, score (mean token score), word (the text's characters start:end), start, end.
    """
    scores = softmax(np.asarray(logits, dtype=np.float32))
    groups: list[list[tuple[str, float, int, int]]] = []
    for token in range(len(offsets)):
        start, end = (int(v) for v in offsets[token])
        if start < 0:
            continue
        label_id = int(np.argmax(scores[token]))
        begins, kind = _entity_tag(id2label.get(label_id, str(label_id)))
        if groups and not begins and kind == groups[-1][-1][0]:
            groups[-1].append((kind, float(scores[token, label_id]), start, end))
        else:
            groups.append([(kind, float(scores[token, label_id]), start, end)])
    return [
        {
            "entity_group": group[0][0],
            "score": float(np.mean([score for _, score, _, _ in group])),
            "word": text[group[0][2] : group[-1][3]],
            "start": group[0][2],
            "end": group[-1][3],
        }
        for group in groups
        if group[0][0] != "O"
    ]


def best_answer(context: str, start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray) -> dict:
    """The most probable context span: start <= end, at most MAX_ANSWER_TOKENS tokens long."""
    in_context = offsets[:, 0] >= 0
    if not in_context.any():
        return {"answer": "", "start": 0, "end": 0, "score": 0.0}
    start_p = np.where(in_context, softmax(np.where(in_context, start_logits, -np.inf)), 0.0)
    end_p = np.where(in_context, softmax(np.where(in_context, end_logits, -np.inf)), 0.0)
    pairs = np.triu(np.outer(start_p, end_p))
    pairs = np.tril(pairs, MAX_ANSWER_TOKENS - 1)
    first, last = np.unravel_index(int(np.argmax(pairs)), pairs.shape)
    start, end = int(offsets[first, 0]), int(offsets[last, 1])
    return {"answer": context[start:end], "start": start, "end": end, "score": float(pairs[first, last])}
