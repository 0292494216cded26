"""Typed build configuration, parsed once at the edge (CLI flags or the operator's spec).

Everything past this module receives a frozen `BuildConfig`; raw strings and dicts stop here.
Validation collects every problem with its field path instead of stopping at the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

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
    ACCURACY = "accuracy"


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
    """min <= opt <= max, as TensorRT optimization profiles want them."""

    min: int
    opt: int
    max: int

    def problems(self, path: str, ceiling: int) -> list[str]:
        found = []
        for name in ("min", "opt", "max"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                found.append(f"{path}.{name}: must be a positive integer, got {value!r}")
            elif value > ceiling:
                found.append(f"{path}.{name}: {value} is above the limit {ceiling}")
        if not found and not self.min <= self.opt <= self.max:
            found.append(f"{path}: need min <= opt <= max, got {self.min}/{self.opt}/{self.max}")
        return found

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


@dataclass(frozen=True)
class Shapes:
    batch: Range = Range(1, 8, 32)
    sequence: Range = Range(1, 128, 256)

    def buckets(self) -> tuple[int, ...]:
        """Sequence lengths the tokenizer pads to: powers of two from 16, capped by max."""
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

    source: str | None = None
    column: str = "text"
    samples: int = 256
    method: CalibrationMethod = CalibrationMethod.PERCENTILE


@dataclass(frozen=True)
class Gate:
    metric: GateMetric | None = None  # None: the task's natural metric
    max_drop: float = 0.01


@dataclass(frozen=True)
class StorageConfig:
    """S3 endpoint for model sources and outputs; credentials come from the environment only."""

    endpoint: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class BuildConfig:
    source: str
    task: Task
    backend: Backend = Backend.ONNXRUNTIME
    precision: Precision = Precision.AUTO
    revision: str = "main"
    tokenizer: str | None = None
    name: str | None = None
    shapes: Shapes = field(default_factory=Shapes)
    calibration: Calibration = field(default_factory=Calibration)
    gate: Gate = field(default_factory=Gate)
    truncation: Truncation = Truncation.TRUNCATE
    storage: StorageConfig = field(default_factory=StorageConfig)


MAX_BATCH = 4096
MAX_SEQUENCE = 8192
_SOURCE_RE = re.compile(r"^(hf|s3|file)://.+")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")


def parse_build_config(
    *,
    source: str,
    task: str,
    backend: str = "onnxruntime",
    precision: str = "auto",
    revision: str = "main",
    tokenizer: str | None = None,
    name: str | None = None,
    batch: tuple[int, int, int] = (1, 8, 32),
    sequence: tuple[int, int, int] = (1, 128, 256),
    calibration_source: str | None = None,
    calibration_column: str = "text",
    calibration_samples: int = 256,
    calibration_method: str = "percentile",
    gate_metric: str | None = None,
    max_drop: float = 0.01,
    truncation: str = "truncate",
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
) -> BuildConfig:
    """Validate raw values into a BuildConfig, raising ConfigError listing every problem."""
    problems: list[str] = []
    for path, uri in (("model.source", source), ("model.tokenizer", tokenizer)):
        if uri is not None and not _SOURCE_RE.match(uri):
            problems.append(f"{path}: {uri!r} must start with hf://, s3:// or file:// followed by a path")
    if name is not None and not _NAME_RE.match(name):
        problems.append(
            f"name: {name!r} must be lowercase letters, digits, '-' or '_', at most 63 characters"
        )
    parsed_task = _enum(Task, task, "model.task", problems)
    parsed_backend = _enum(Backend, backend, "optimization.backend", problems)
    parsed_precision = _enum(Precision, precision, "optimization.precision", problems)
    method = _enum(CalibrationMethod, calibration_method, "optimization.calibration.method", problems)
    metric = (
        _enum(GateMetric, gate_metric, "optimization.accuracyGate.metric", problems) if gate_metric else None
    )
    parsed_truncation = _enum(Truncation, truncation, "truncation", problems)
    shapes = Shapes(Range(*batch), Range(*sequence))
    problems += shapes.batch.problems("optimization.shapes.batch", MAX_BATCH)
    problems += shapes.sequence.problems("optimization.shapes.sequence", MAX_SEQUENCE)
    if not isinstance(calibration_samples, int) or not 8 <= calibration_samples <= 100_000:
        problems.append(f"optimization.calibration.samples: must be 8..100000, got {calibration_samples!r}")
    if not 0.0 <= max_drop <= 1.0:
        problems.append(f"optimization.accuracyGate.maxDrop: must be within 0..1, got {max_drop!r}")
    if not revision:
        problems.append("model.revision: must not be empty")
    if problems:
        raise ConfigError("; ".join(problems))
    return BuildConfig(
        source=source,
        task=parsed_task,
        backend=parsed_backend,
        precision=parsed_precision,
        revision=revision,
        tokenizer=tokenizer,
        name=name,
        shapes=shapes,
        calibration=Calibration(calibration_source, calibration_column, calibration_samples, method),
        gate=Gate(metric, max_drop),
        truncation=parsed_truncation,
        storage=StorageConfig(s3_endpoint, s3_region),
    )
