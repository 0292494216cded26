"""Turn raw ensemble outputs into answers people read: labels, entities, spans, embeddings.

Pure numpy functions of one text's outputs, so every task's post-processing is tested without Triton.
"""

from __future__ import annotations

import numpy as np

MAX_ANSWER_TOKENS = 30


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


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
