"""The accuracy gate: compare a variant's outputs with fp32 PyTorch on held-out texts.

Pure functions over numpy arrays. Unlabeled metrics score a variant against fp32 outputs: the
drop is `1 - agreement` (labels, tokens or spans that match the reference), `1 - mean cosine`
(embeddings) or `1 - neighbour agreement` (embeddings: the share of each text's k nearest
held-out neighbours that stay its neighbours). Labeled metrics score fp32 and the variant against
the user's labels (accuracy, entity F1, SQuAD exact match and F1) and the drop is the difference.
Scores and drops are fractions: 0.004 = 0.4 points. A variant passes when the drop is within
`max_drop`. A one-logit classifier (a regression or cross-encoder score) has no labels to agree on,
so agreement is replaced there by ONE_LOGIT_METRIC, which report.json names. The pipeline decides
what to do with a failing report.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kubeformer_builder.config import GateMetric, Task
from kubeformer_builder.errors import ConfigError

ONE_LOGIT_METRIC = "pearson_and_max_relative_error"

# One batch of outputs: the task's output arrays, in OUTPUT_NAMES order.
Outputs = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class GateReport:
    metric: str
    score: float  # the variant's: agreement rate, mean cosine or neighbour agreement (1.0 = fp32), or
    # its labeled score (accuracy, F1, exact match: 1.0 = every label right)
    drop: float
    max_drop: float
    max_abs_diff: float
    samples: int
    reference_score: float | None = None  # fp32 PyTorch's labeled score; None for unlabeled metrics
    # neighbours: the mean cosine to the reference, which must stay at least NEIGHBOURS_COSINE_FLOOR.
    mean_cosine: float | None = None

    @property
    def moved(self) -> bool:
        """The embeddings themselves moved away from the reference's (neighbours' cosine floor)."""
        return self.mean_cosine is not None and self.mean_cosine < NEIGHBOURS_COSINE_FLOOR

    @property
    def passed(self) -> bool:
        # Scores are ratios of counts: 0.9 - 0.896 is 0.0040000000000000036 in floats.
        return self.drop <= self.max_drop + 1e-9 and not self.moved

    def to_dict(self) -> dict:
        found = {**asdict(self), "passed": self.passed}
        for optional in ("reference_score", "mean_cosine"):
            if found[optional] is None:
                del found[optional]
        if self.reference_score is not None:  # the way accuracy results are quoted: in points
            found["points"] = {
                "fp32": round(100 * self.reference_score, 3),
                "variant": round(100 * self.score, 3),
                "drop": round(100 * self.drop, 3),
            }
        return found


# Largest accepted drop when the spec gives none. neighbours: benchmarks/accuracy/README.md (MiniLM
# int8 variants up to a drop of 0.072 kept >= 99.55% of a downstream linear classifier's decisions;
# the 99% line fell between drops of 0.209 and 0.215: the default keeps a margin below it).
DEFAULT_MAX_DROP = 0.01
NEIGHBOURS_MAX_DROP = 0.075
NEIGHBOURS_K = 10
# Neighbours alone would pass an export that moves every embedding alike (a wrong pooling keeps much of
# the neighbourhood structure of a tiny set): served embeddings must also stay close to the library's,
# as users mix them with embeddings made elsewhere. int8 MiniLM variants measure 0.99 and above.
NEIGHBOURS_COSINE_FLOOR = 0.95

# Which metrics each task can be judged by; the first is the default without and with labels.
_UNLABELED = {
    Task.TEXT_CLASSIFICATION: (GateMetric.AGREEMENT, GateMetric.COSINE),
    Task.TOKEN_CLASSIFICATION: (GateMetric.AGREEMENT, GateMetric.COSINE),
    Task.QUESTION_ANSWERING: (GateMetric.AGREEMENT, GateMetric.COSINE),
    Task.FEATURE_EXTRACTION: (GateMetric.NEIGHBOURS, GateMetric.COSINE),
}
_LABELED = {
    Task.TEXT_CLASSIFICATION: (GateMetric.ACCURACY,),
    Task.TOKEN_CLASSIFICATION: (GateMetric.F1,),
    Task.QUESTION_ANSWERING: (GateMetric.F1, GateMetric.EXACT_MATCH),
    Task.FEATURE_EXTRACTION: (),
}


def default_metric(task: Task, labeled: bool = False) -> GateMetric:
    """The task's natural metric: scored against the user's labels when there are some."""
    return (_LABELED[task] if labeled else _UNLABELED[task])[0]


def default_max_drop(metric: GateMetric) -> float:
    return NEIGHBOURS_MAX_DROP if metric is GateMetric.NEIGHBOURS else DEFAULT_MAX_DROP


def resolve_metric(task: Task, requested: GateMetric | None, labeled: bool = False) -> GateMetric:
    """The metric a build is judged by; ConfigError naming the field when it does not fit the task.

    `labeled`: whether optimization.evaluation gives labeled data (then the default is labeled too).
    """
    if labeled and not _LABELED[task]:
        raise ConfigError(
            f"optimization.evaluation: {task.value} outputs have no labels to score; "
            "drop the evaluation data and judge embeddings by 'neighbours' or 'cosine'"
        )
    metric = requested or default_metric(task, labeled)
    allowed = _UNLABELED[task] + (_LABELED[task] if labeled else ())
    if metric not in allowed:
        needs = " (with labeled optimization.evaluation data)" if metric.labeled and not labeled else ""
        raise ConfigError(
            f"optimization.accuracyGate.metric: {metric.value!r} does not judge {task.value}{needs}; "
            f"use one of {', '.join(m.value for m in allowed)}"
        )
    return metric


def cosine_rows(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    cand = candidate.reshape(len(candidate), -1).astype(np.float64)
    denominator = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    return np.sum(ref * cand, axis=1) / np.maximum(denominator, 1e-12)


def agreement(task: Task, reference: Outputs, candidate: Outputs, mask: np.ndarray) -> np.ndarray:
    """Per-unit agreement: one value per text (labels, spans) or per real token."""
    if task is Task.TEXT_CLASSIFICATION:
        return reference[0].argmax(-1) == candidate[0].argmax(-1)
    if task is Task.TOKEN_CLASSIFICATION:
        return (reference[0].argmax(-1) == candidate[0].argmax(-1))[mask.astype(bool)]
    if task is Task.QUESTION_ANSWERING:
        starts = reference[0].argmax(-1) == candidate[0].argmax(-1)
        ends = reference[1].argmax(-1) == candidate[1].argmax(-1)
        return starts & ends
    raise ConfigError(f"agreement is not defined for {task.value}")


def evaluate(
    task: Task,
    metric: GateMetric,
    max_drop: float,
    reference: list[Outputs],
    candidate: list[Outputs],
    masks: list[np.ndarray],
) -> GateReport:
    """Score a variant over all held-out batches against the fp32 reference."""
    if metric is GateMetric.AGREEMENT and task is Task.TEXT_CLASSIFICATION and reference[0][0].shape[-1] == 1:
        return _one_logit_report(max_drop, reference, candidate)
    mean_cosine = None
    if metric is GateMetric.NEIGHBOURS:  # one set: neighbours are found among all held-out texts
        embeddings = [np.concatenate([o[0] for o in outs]) for outs in (reference, candidate)]
        values = neighbour_agreement(*embeddings)
        mean_cosine = float(cosine_rows(*embeddings).mean())
    else:
        values = np.concatenate(
            [_unit_scores(task, metric, *batch) for batch in zip(reference, candidate, masks, strict=True)]
        )
    score = float(values.mean()) if values.size else 0.0
    samples = int(sum(len(m) for m in masks))
    return GateReport(
        metric.value,
        score,
        max(0.0, 1.0 - score),
        max_drop,
        max_abs_diff(reference, candidate),
        samples,
        mean_cosine=mean_cosine,
    )


def _unit_scores(task: Task, metric: GateMetric, ref: Outputs, cand: Outputs, mask: np.ndarray) -> np.ndarray:
    if metric is GateMetric.COSINE:
        return np.concatenate([_masked_cosine(task, r, c, mask) for r, c in zip(ref, cand, strict=True)])
    return agreement(task, ref, cand, mask).astype(np.float64)


def max_abs_diff(reference: list[Outputs], candidate: list[Outputs]) -> float:
    """Largest absolute difference between any fp32 and variant output value."""
    return max(
        (float(np.max(np.abs(r - c))) for ref, cand in zip(reference, candidate, strict=True)
         for r, c in zip(ref, cand, strict=True)),
        default=0.0,
    )  # fmt: skip


def labeled_report(
    metric: GateMetric, reference_score: float, score: float, max_drop: float, max_abs: float, samples: int
) -> GateReport:
    """A labeled metric's verdict: drop = fp32 score - variant score (negative when the variant wins)."""
    return GateReport(
        metric.value, score, reference_score - score, max_drop, max_abs, samples, reference_score
    )


def neighbour_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = NEIGHBOURS_K) -> np.ndarray:
    """Per text: the share of its k nearest neighbours (cosine, among the other texts) under fp32
    that stay among its k nearest under the variant. reference, candidate: (texts, dim) float.

    k shrinks to texts - 1 for small sets; fewer than 2 texts is a ConfigError.
    """
    count = len(reference)
    if count < 2:
        raise ConfigError("accuracy gate: neighbours needs at least 2 held-out texts")
    k = min(k, count - 1)
    nearest = []
    for embeddings in (reference, candidate):
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        similarity = unit.astype(np.float64) @ unit.T.astype(np.float64)
        np.fill_diagonal(similarity, -np.inf)
        nearest.append(np.argsort(-similarity, axis=1, kind="stable")[:, :k])
    return np.array([len(set(a) & set(b)) / k for a, b in zip(*nearest, strict=True)])


def accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Share of texts whose argmax label is the gold one. labels: (texts,) int; logits: (texts, labels)."""
    return float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(labels))) if len(labels) else 0.0


Entity = tuple[str, int, int]  # (type, first unit, last unit), units being words or characters


def tag_entities(tags: Sequence[str]) -> list[Entity]:
    """Entities of an IOB1/IOB2/IOE/IOBES tag sequence, chunked as conlleval (and seqeval's default
    mode) do: a chunk starts at B-/S-, at a type change, or at I- after O; it ends before the next
    start, an O, or after E-/S-. A tag without prefix counts as I- of that type."""
    entities: list[Entity] = []
    start, kind, previous = None, "", "O"
    for index, tag in enumerate([*tags, "O"]):
        prefix, current = _split_tag(tag)
        if start is not None and (prefix in ("O", "B", "S") or current != kind or previous in ("E", "S")):
            entities.append((kind, start, index - 1))
            start = None
        if prefix != "O" and start is None:
            start, kind = index, current
        previous = prefix
    return entities


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); 'PER' -> ('I', 'PER')."""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    return (prefix, kind) if dash and prefix in ("B", "I", "E", "S") else ("I", tag)


def entity_f1(gold: Sequence[set[Entity]], predicted: Sequence[set[Entity]]) -> float:
    """Micro-averaged entity-level F1: an entity counts when type and both ends match exactly."""
    hits = sum(len(g & p) for g, p in zip(gold, predicted, strict=True))
    found, wanted = sum(len(p) for p in predicted), sum(len(g) for g in gold)
    if not found or not wanted:
        return float(found == wanted)  # nothing to find and nothing found: perfect
    precision, recall = hits / found, hits / wanted
    return 0.0 if not hits else 2 * precision * recall / (precision + recall)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def answer_exact_match(prediction: str, answers: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(a) for a in answers))


def answer_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best token-overlap F1 of the prediction against any gold answer (SQuAD's evaluate-v1.1)."""
    best = 0.0
    predicted = normalize_answer(prediction).split()
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(gold)).values())
        if not predicted or not gold:
            best = max(best, float(predicted == gold))
        elif common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _masked_cosine(task: Task, reference: np.ndarray, candidate: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if reference.ndim == 2 and task is Task.QUESTION_ANSWERING:  # per-token logits: mask padding
        keep = mask.astype(bool)
        return cosine_rows(np.where(keep, reference, 0.0), np.where(keep, candidate, 0.0))
    if reference.ndim == 3:  # token classification: one cosine per real token
        keep = mask.astype(bool)
        return cosine_rows(reference[keep], candidate[keep])
    return cosine_rows(reference, candidate)


def one_logit_score(reference: np.ndarray, candidate: np.ndarray) -> float:
    """min(Pearson r of the two score columns, 1 - max |candidate - reference| / max |reference|).

    reference, candidate: [texts] or [texts, 1] floats. Correlation catches a candidate that orders
    texts differently, the relative error one that shifts or scales every score; 1.0 = identical,
    0.0 for a candidate with non-finite values.
    """
    ref = reference.reshape(-1).astype(np.float64)
    cand = candidate.reshape(-1).astype(np.float64)
    if not np.isfinite(cand).all():
        return 0.0
    scale = max(float(np.max(np.abs(ref))), 1e-12)
    relative_error = float(np.max(np.abs(cand - ref))) / scale
    if np.ptp(ref) == 0 or np.ptp(cand) == 0:  # a constant column has no correlation to measure
        correlation = 1.0 if np.allclose(ref, cand) else 0.0
    else:
        correlation = float(np.corrcoef(ref, cand)[0, 1])
    return min(correlation, 1.0 - relative_error)


def _one_logit_report(max_drop: float, reference: list[Outputs], candidate: list[Outputs]) -> GateReport:
    ref = np.concatenate([outputs[0] for outputs in reference])
    cand = np.concatenate([outputs[0] for outputs in candidate])
    score = one_logit_score(ref, cand)
    max_abs = float(np.max(np.abs(ref - cand))) if ref.size else 0.0
    return GateReport(ONE_LOGIT_METRIC, score, max(0.0, 1.0 - score), max_drop, max_abs, len(ref))
