"""Typed build configuration, parsed once at the edge (CLI flags or the operator's spec).

Everything past this module receives a frozen `BuildConfig`; raw strings and dicts stop here.
Validation collects every problem with its field path instead of stopping at the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from kubeformer_builder.build_fields import build_fields, defaults
from kubeformer_builder.errors import ConfigError


class Task(str, Enum):
    TEXT_CLASSIFICATION = "text-classification"
    FEATURE_EXTRACTION = "feature-extraction"
    TOKEN_CLASSIFICATION = "token-classification"
    QUESTION_ANSWERING = "question-answering"


class Backend(str, Enum):
    ONNXRUNTIME = "onnxruntime"
    TENSORRT = "tensorrt"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    AUTO = "auto"


class CalibrationMethod(str, Enum):
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    MAX = "max"


class GateMetric(str, Enum):
    AGREEMENT = "agreement"
    COSINE = "cosine"
    NEIGHBOURS = "neighbours"
    ACCURACY = "accuracy"
    F1 = "f1"
    EXACT_MATCH = "exact_match"

    @property
    def labeled(self) -> bool:
        """Scored against the user's labels (optimization.evaluation), not against fp32 outputs."""
        return self in (GateMetric.ACCURACY, GateMetric.F1, GateMetric.EXACT_MATCH)


class Truncation(str, Enum):
    TRUNCATE = "truncate"
    REFUSE = "refuse"


def _enum(enum: type[Enum], value: str, path: str, problems: list[str]):
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        problems.append(f"{path}: {value!r} is not one of {allowed}")
        return None


@dataclass(frozen=True)
class Range:
    """min <= opt <= max, as TensorRT optimization profiles want them; max None = not yet known
    (the sequence max defaults to the model's limit, set once the model is read)."""

    min: int
    opt: int
    max: int | None

    def problems(self, path: str, ceiling: int) -> list[str]:
        found = []
        for name in ("min", "opt", "max"):
            value = getattr(self, name)
            if name == "max" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                found.append(f"{path}.{name}: must be a positive integer, got {value!r}")
            elif value > ceiling:
                found.append(f"{path}.{name}: {value} is above the limit {ceiling}")
        if not found and not self.min <= self.opt <= (self.opt if self.max is None else self.max):
            found.append(f"{path}: need min <= opt <= max, got {self.min}/{self.opt}/{self.max}")
        return found

    def to_dict(self) -> dict[str, int | None]:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    def as_tuple(self) -> tuple[int, int, int | None]:
        return (self.min, self.opt, self.max)


@dataclass(frozen=True)
class Shapes:
    batch: Range
    sequence: Range

    def fit_sequence(self, limit: int, why: str) -> Shapes:
        """These shapes within a model's sequence limit: an unset max becomes the limit and opt is
        clamped to it. Raises ConfigError when an explicit max (or min) is above the limit;
        `why` says where the limit comes from."""
        sequence = self.sequence
        for name in ("max", "min"):
            value = getattr(sequence, name)
            if value is not None and value > limit:
                raise ConfigError(
                    f"optimization.shapes.sequence.{name}: {value} is above this model's limit of {limit} "
                    f"tokens ({why}); leave max unset to serve up to {limit}, or set it at most {limit}"
                )
        maximum = limit if sequence.max is None else sequence.max
        return Shapes(self.batch, Range(sequence.min, min(sequence.opt, maximum), maximum))

    def buckets(self) -> tuple[int, ...]:
        """Sequence lengths the tokenizer pads to: powers of two from 16, capped by max (which must
        be resolved, see `fit_sequence`)."""
        if self.sequence.max is None:
            raise ValueError("Shapes.buckets: the sequence max is not resolved yet")
        lengths, length = [], 16
        while length < self.sequence.max:
            if length >= self.sequence.min:
                lengths.append(length)
            length *= 2
        lengths.append(self.sequence.max)
        return tuple(lengths)


@dataclass(frozen=True)
class Calibration:
    """Where calibration (and held-out gate) texts come from; None source = built-in corpus."""

    source: str | None
    column: str
    samples: int
    method: CalibrationMethod
    pair_column: str | None = None  # second texts of pairs (text-classification pair models)


@dataclass(frozen=True)
class Evaluation:
    """The user's labeled held-out data (see labeled.py for the formats); None source = none given."""

    source: str | None  # file://, s3://, hf:// (a dataset repository) or an inline JSON list of rows
    text_column: str
    text_pair_column: str | None
    label_column: str
    samples: int  # at most this many examples are scored


@dataclass(frozen=True)
class Gate:
    metric: GateMetric | None  # None: the task's natural metric
    max_drop: float | None  # None: the metric's default (gate.default_max_drop)


@dataclass(frozen=True)
class StorageConfig:
    """S3 endpoint for model sources and outputs; region (AWS_REGION) and credentials come from the
    environment only."""

    endpoint: str | None


@dataclass(frozen=True)
class BuildConfig:
    """A validated build; made only by `parse_build_config`, whose defaults live in build_fields.py."""

    source: str
    task: Task
    backend: Backend
    precision: Precision
    revision: str
    tokenizer: str | None
    name: str | None
    shapes: Shapes
    calibration: Calibration
    evaluation: Evaluation
    gate: Gate
    truncation: Truncation
    storage: StorageConfig
    benchmark_seconds: float  # timing budget per contender and shape (evaluation.time_against_reference)


MAX_BATCH = 4096
MAX_SEQUENCE = 8192
MAX_BENCHMARK_SECONDS = 600
_SOURCE_RE = re.compile(r"^(hf|s3|file)://.+")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
_PATHS = {"source": "model.source", "task": "model.task"}
_COLUMNS = {
    "evaluation_text_column": "optimization.evaluation.textColumn",
    "evaluation_text_pair_column": "optimization.evaluation.textPairColumn",
    "evaluation_label_column": "optimization.evaluation.labelColumn",
}


def parse_build_config(**raw: Any) -> BuildConfig:
    """Validate raw settings (keys of build_fields.build_fields()) into a BuildConfig.

    A missing setting takes the table's default; an unknown key is a TypeError (a caller's bug).
    Raises ConfigError listing every problem with its field path.
    """
    unknown = sorted(set(raw) - {f.key for f in build_fields()})
    if unknown:
        raise TypeError(f"parse_build_config: unknown settings {unknown}")
    values = {**defaults(), **{key: value for key, value in raw.items() if value is not None}}
    missing = [f.key for f in build_fields() if f.required and f.key not in values]
    if missing:
        raise ConfigError("; ".join(f"{_PATHS[key]}: required" for key in missing))
    source, task, tokenizer, name = values["source"], values["task"], values["tokenizer"], values["name"]
    problems: list[str] = []
    for path, uri in (("model.source", source), ("model.tokenizer", tokenizer)):
        if uri is not None and not _SOURCE_RE.match(uri):
            problems.append(f"{path}: {uri!r} must start with hf://, s3:// or file:// followed by a path")
    if name is not None and not _NAME_RE.match(name):
        problems.append(
            f"name: {name!r} must be lowercase letters, digits, '-' or '_', at most 63 characters"
        )
    parsed_task = _enum(Task, task, "model.task", problems)
    parsed_backend = _enum(Backend, values["backend"], "optimization.backend", problems)
    parsed_precision = _enum(Precision, values["precision"], "optimization.precision", problems)
    method = _enum(
        CalibrationMethod, values["calibration_method"], "optimization.calibration.method", problems
    )
    gate_metric, max_drop, samples = values["gate_metric"], values["max_drop"], values["calibration_samples"]
    metric = (
        _enum(GateMetric, gate_metric, "optimization.accuracyGate.metric", problems) if gate_metric else None
    )
    parsed_truncation = _enum(Truncation, values["truncation"], "optimization.truncation", problems)
    shapes = Shapes(Range(*values["batch"]), Range(*values["sequence"]))
    if shapes.batch.max is None:
        problems.append("optimization.shapes.batch.max: required")
    problems += shapes.batch.problems("optimization.shapes.batch", MAX_BATCH)
    problems += shapes.sequence.problems("optimization.shapes.sequence", MAX_SEQUENCE)
    if not isinstance(samples, int) or not 8 <= samples <= 100_000:
        problems.append(f"optimization.calibration.samples: must be 8..100000, got {samples!r}")
    benchmark_seconds = values["benchmark_seconds"]
    if not isinstance(benchmark_seconds, int | float) or not 0.0 < benchmark_seconds <= MAX_BENCHMARK_SECONDS:
        problems.append(
            f"optimization.benchmarkSeconds: must be above 0 and at most {MAX_BENCHMARK_SECONDS}, "
            f"got {benchmark_seconds!r}"
        )
    evaluation_samples = values["evaluation_samples"]
    if not isinstance(evaluation_samples, int) or not 1 <= evaluation_samples <= 100_000:
        problems.append(f"optimization.evaluation.samples: must be 1..100000, got {evaluation_samples!r}")
    for key, path in _COLUMNS.items():
        if values[key] is not None and not str(values[key]).strip():
            problems.append(f"{path}: must not be empty")
    if metric is not None and metric.labeled and values["evaluation_source"] is None:
        problems.append(
            f"optimization.accuracyGate.metric: {metric.value!r} scores the model against labels, "
            "which optimization.evaluation gives (source or examples)"
        )
    if max_drop is not None and (not isinstance(max_drop, int | float) or not 0.0 <= max_drop <= 1.0):
        problems.append(f"optimization.accuracyGate.maxDrop: must be within 0..1, got {max_drop!r}")
    pair_column = values["calibration_pair_column"]
    if pair_column is not None and task != Task.TEXT_CLASSIFICATION.value:
        problems.append(
            f"optimization.calibration.pairColumn: only text-classification takes pairs, not {task}"
        )
    if pair_column is not None and values["calibration_source"] is None:
        problems.append(
            "optimization.calibration.pairColumn: needs optimization.calibration.source "
            "(the built-in corpus holds single texts)"
        )
    if not values["revision"]:
        problems.append("model.revision: must not be empty")
    if problems:
        raise ConfigError("; ".join(problems))
    return BuildConfig(
        source=source,
        task=parsed_task,
        backend=parsed_backend,
        precision=parsed_precision,
        revision=values["revision"],
        tokenizer=tokenizer,
        name=name,
        shapes=shapes,
        calibration=Calibration(
            values["calibration_source"], values["calibration_column"], samples, method, pair_column
        ),
        evaluation=Evaluation(
            values["evaluation_source"],
            values["evaluation_text_column"],
            values["evaluation_text_pair_column"],
            values["evaluation_label_column"],
            evaluation_samples,
        ),
        gate=Gate(metric, None if max_drop is None else float(max_drop)),
        truncation=parsed_truncation,
        storage=StorageConfig(values["s3_endpoint"]),
        benchmark_seconds=float(benchmark_seconds),
    )
