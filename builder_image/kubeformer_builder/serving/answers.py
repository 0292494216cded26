"""Turn raw ensemble outputs into answers people read: labels, entities, spans, embeddings.

Pure numpy functions of one text's outputs, so every task's post-processing is tested without Triton.
"""

from __future__ import annotations

import numpy as np

MAX_ANSWER_TOKENS = 15  # transformers' QA pipeline default (max_answer_len)
CLS_OFFSET = -2  # OFFSETS of a QA window's CLS token (see triton/tokenizer_model.py)
# What transformers' QA pipeline gives undesired tokens before its softmax.
_MASKED_LOGIT = -10000.0


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


def _window_answer(context: str, start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray):
    """One window's best span as transformers' QA pipeline scores it (select_starts_ends, top_k 1).

    Context tokens and the CLS token share the softmax; CLS (position 0) is then zeroed, so a span
    is context tokens only. None when the window holds no candidate.
    """
    desired = (offsets[:, 0] >= 0) | (offsets[:, 0] == CLS_OFFSET)
    start = softmax(np.where(desired, start_logits, _MASKED_LOGIT).astype(np.float64))
    end = softmax(np.where(desired, end_logits, _MASKED_LOGIT).astype(np.float64))
    start[0] = end[0] = 0.0
    candidates = np.tril(np.triu(np.outer(start, end)), MAX_ANSWER_TOKENS - 1)
    first, last = np.unravel_index(int(np.argmax(candidates)), candidates.shape)
    if not (desired[first] and desired[last]):
        return None
    begin, finish = max(int(offsets[first, 0]), 0), max(int(offsets[last, 1]), 0)
    return {
        "answer": context[begin:finish],
        "start": begin,
        "end": finish,
        "score": float(candidates[first, last]),
    }


def best_answer(context: str, start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray) -> dict:
    """The most probable span of `context` over all its windows, as transformers' QA pipeline finds it.

    start_logits, end_logits: float32 [W, L] (one row per context window); offsets: int32 [W, L, 2],
    the character span in `context` of each token's word, [-1, -1] outside the context and
    [-2, -2] for CLS. A span is at most MAX_ANSWER_TOKENS tokens, start <= end; the first window
    wins a tie. Returns {"answer", "start", "end", "score"} (character offsets into `context`).
    """
    best = {"answer": "", "start": 0, "end": 0, "score": 0.0}
    for window in zip(start_logits, end_logits, offsets, strict=True):
        answer = _window_answer(context, *window)
        if answer is not None and answer["score"] > best["score"]:
            best = answer
    return best
