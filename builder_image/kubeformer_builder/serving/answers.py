"""Turn raw ensemble outputs into answers people read: labels, entities, spans, embeddings.

Pure numpy functions of one text's outputs, so every task's post-processing is tested without Triton.
"""

from __future__ import annotations

import numpy as np

MAX_ANSWER_TOKENS = 15  # transformers' QA pipeline default (max_answer_len)
CLS_OFFSET = -2  # OFFSETS of a QA window's CLS token (see triton/tokenizer_model.py)
# What transformers' QA pipeline gives undesired tokens before its softmax.
_MASKED_LOGIT = -10000.0


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def classify(logits: np.ndarray, id2label: dict[int, str]) -> list[dict]:
    """Every label with its probability, most likely first."""
    scores = softmax(logits.astype(np.float64))
    order = np.argsort(-scores, kind="stable")
    return [{"label": id2label.get(int(i), str(int(i))), "score": float(scores[i])} for i in order]


def _entity_type(label: str) -> tuple[str, bool]:
    """('PER', True) for B-PER, ('PER', False) for I-PER or PER; ('', False) for O."""
    if label == "O":
        return "", False
    if label[:2] in ("B-", "I-"):
        return label[2:], label.startswith("B-")
    return label, False


def aggregate_entities(
    text: str, logits: np.ndarray, offsets: np.ndarray, id2label: dict[int, str]
) -> list[dict]:
    """Group token predictions into entities ("simple" aggregation, as transformers' pipeline does).

    A B- label, a change of type or an O ends the current entity; subword pieces of one word (no gap
    between their character spans) never start a new entity of the same type.
    """
    scores = softmax(logits.astype(np.float64))
    entities: list[dict] = []
    current: dict | None = None
    for token in range(len(offsets)):
        start, end = (int(v) for v in offsets[token])
        if start < 0:
            continue
        label_id = int(np.argmax(scores[token]))
        kind, begins = _entity_type(id2label.get(label_id, str(label_id)))
        continues = (
            current is not None and kind == current["entity"] and (not begins or start == current["end"])
        )
        if current is not None and not continues:
            entities.append(current)
            current = None
        if not kind:
            continue
        if current is None:
            current = {"entity": kind, "start": start, "end": end, "scores": []}
        current["end"] = end
        current["scores"].append(float(scores[token, label_id]))
    if current is not None:
        entities.append(current)
    return [
        {
            "entity": e["entity"],
            "word": text[e["start"] : e["end"]],
            "start": e["start"],
            "end": e["end"],
            "score": sum(e["scores"]) / len(e["scores"]),
        }
        for e in entities
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
