"""The accuracy gate: compare a variant's outputs with fp32 PyTorch on held-out texts.

Pure functions over numpy arrays. The drop is `1 - agreement` (labels, tokens or spans that
match the reference) or `1 - mean cosine` (embeddings); a variant passes when the drop is
within `max_drop`. A one-logit classifier (a regression or cross-encoder score) has no labels to agree
on, so agreement is replaced there by ONE_LOGIT_METRIC, which report.json names.
The pipeline decides what to do with a failing report.
"""

from __future__ import annotations

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
    score: float  # agreement rate or mean cosine, 1.0 = identical to fp32
    drop: float
    max_drop: float
    max_abs_diff: float
    samples: int

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def default_metric(task: Task) -> GateMetric:
    return GateMetric.COSINE if task is Task.FEATURE_EXTRACTION else GateMetric.AGREEMENT


def resolve_metric(task: Task, requested: GateMetric | None) -> GateMetric:
    metric = requested or default_metric(task)
    if metric is GateMetric.ACCURACY:
        raise ConfigError(
            "optimization.accuracyGate.metric: 'accuracy' needs labelled held-out data, which builds do not "
            "take; use 'agreement' (same predictions as fp32) or 'cosine'"
        )
    if metric is GateMetric.AGREEMENT and task is Task.FEATURE_EXTRACTION:
        raise ConfigError(
            "optimization.accuracyGate.metric: 'agreement' needs labels; embeddings use 'cosine'"
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
    scores, max_abs = [], 0.0
    for ref, cand, mask in zip(reference, candidate, masks, strict=True):
        max_abs = max(max_abs, *(float(np.max(np.abs(r - c))) for r, c in zip(ref, cand, strict=True)))
        if metric is GateMetric.COSINE:
            per_output = [_masked_cosine(task, r, c, mask) for r, c in zip(ref, cand, strict=True)]
            scores.append(np.concatenate(per_output))
        else:
            scores.append(agreement(task, ref, cand, mask).astype(np.float64))
    values = np.concatenate(scores)
    score = float(values.mean()) if values.size else 0.0
    return GateReport(
        metric.value, score, max(0.0, 1.0 - score), max_drop, max_abs, int(sum(len(m) for m in masks))
    )


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
