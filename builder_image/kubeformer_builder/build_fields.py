"""The one table of build settings: each row names a setting once, with its default, its place in the
OptimizedTransformer spec, its `kubeformer build` flag and how its typed value is read back.

Everything that maps build settings reads this table and nothing else:
- `config.parse_build_config` fills a missing setting with the row's default;
- `cli.options` makes the build flags (and their defaults) from it;
- the operator reads the custom resource's spec through `spec_path` and renders the build Job's
  arguments with `to_arg`, so a spec, its BuildConfig and its command line cannot drift apart.
A unit test round-trips spec -> BuildConfig -> arguments -> BuildConfig, and another compares every
default with the CRD's (crds/optimizedtransformer.yaml stays the schema's single source of truth).

Kept free of heavy imports: the operator imports it without torch.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

REQUIRED = object()  # default of a setting every build must name


def parse_triple(text: str) -> tuple[int, int, int | None]:
    """'MIN,OPT,MAX' as three integers, or 'MIN,OPT' with MAX unset (argparse type of the shape flags)."""
    try:
        numbers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MIN,OPT,MAX integers") from None
    if len(numbers) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers MIN,OPT,MAX (or MIN,OPT)")
    return (*numbers, None) if len(numbers) == 2 else numbers  # type: ignore[return-value]


def _format(value: Any) -> str:
    if isinstance(value, tuple):  # an unset max (None, last) is left out: MIN,OPT
        return ",".join(str(part) for part in value if part is not None)
    if isinstance(value, Enum):
        return str(value.value)
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class BuildField:
    """One build setting.

    key: keyword of `parse_build_config` and attribute name on argparse namespaces.
    spec_path: dotted path below the custom resource's `.spec` (None: not set there).
    flag: the `kubeformer build` option (None: the positional MODEL argument).
    read: the raw value back from a typed BuildConfig (the inverse of parsing).
    choices: the enum a string setting must belong to; parse: argparse type for other kinds.
    """

    key: str
    spec_path: str | None
    flag: str | None
    default: Any
    help: str
    read: Callable[[Any], Any]
    choices: type[Enum] | None = None
    parse: Callable[[str], Any] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def add_argument(self, parser: argparse.ArgumentParser) -> None:
        """This setting as an argparse argument, defaulting to None so that the table's default applies."""
        options: dict[str, Any] = {"help": self.help}
        if self.choices is not None:
            options["choices"] = [member.value for member in self.choices]
        if self.parse is not None:
            options["type"] = self.parse
        if self.flag is None:
            parser.add_argument(self.key, metavar="MODEL", **options)
            return
        if self.default is not REQUIRED and self.default is not None:
            options["help"] += f" (default: {_format(self.default)})"
        parser.add_argument(self.flag, dest=self.key, default=None, **options)

    def to_arg(self, value: Any) -> str:
        """The command-line word(s) that parse back into `value`."""
        text = _format(value)
        return text if self.flag is None else f"{self.flag}={text}"

    def from_spec(self, spec: Mapping[str, Any]) -> Any:
        """The raw value at spec_path (None when absent): shapes are {min, opt, max} objects there."""
        value: Any = spec
        for part in (self.spec_path or "").split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        if isinstance(self.default, tuple) and isinstance(value, Mapping):
            defaults = dict(zip(("min", "opt", "max"), self.default, strict=True))
            return tuple(value.get(part, default) for part, default in defaults.items())
        return value


def _shape(attribute: str) -> Callable[[Any], tuple[int, int, int]]:
    return lambda c: getattr(c.shapes, attribute).as_tuple()


def _value(enum_value: Enum | None) -> str | None:
    return None if enum_value is None else enum_value.value


@functools.cache
def build_fields() -> tuple[BuildField, ...]:
    """The table (a function so the enums of config.py can be imported without a cycle)."""
    from kubeformer_builder.config import Backend, CalibrationMethod, GateMetric, Precision, Task, Truncation

    return (
        BuildField(
            "source",
            "model.source",
            None,
            REQUIRED,
            "file://PATH, hf://ORG/NAME or s3://BUCKET/PATH",
            lambda c: c.source,
        ),
        BuildField(
            "task",
            "model.task",
            "--task",
            REQUIRED,
            "what the model is served for",
            lambda c: c.task.value,
            choices=Task,
        ),
        BuildField(
            "revision",
            "model.revision",
            "--revision",
            "main",
            "hub revision (branch, tag or commit)",
            lambda c: c.revision,
        ),
        BuildField(
            "tokenizer",
            "model.tokenizer",
            "--tokenizer",
            None,
            "tokenizer source if not the model's own",
            lambda c: c.tokenizer,
        ),
        BuildField(
            "name", None, "--name", None, "Triton model name (default: from the source)", lambda c: c.name
        ),
        BuildField(
            "backend",
            "optimization.backend",
            "--backend",
            Backend.ONNXRUNTIME.value,
            "engine runtime",
            lambda c: c.backend.value,
            choices=Backend,
        ),
        BuildField(
            "precision",
            "optimization.precision",
            "--precision",
            Precision.AUTO.value,
            "auto: the fastest variant that passes the accuracy gate",
            lambda c: c.precision.value,
            choices=Precision,
        ),
        BuildField(
            "batch",
            "optimization.shapes.batch",
            "--batch",
            (1, 8, 32),
            "MIN,OPT,MAX batch size",
            _shape("batch"),
            parse=parse_triple,
        ),
        BuildField(
            "sequence",
            "optimization.shapes.sequence",
            "--sequence",
            (1, 128, None),
            "MIN,OPT[,MAX] sequence length in tokens; MAX defaults to the model's limit (the smallest of "
            "its position embeddings, tokenizer model_max_length and sentence-transformers max_seq_length), "
            "OPT is clamped to it",
            _shape("sequence"),
            parse=parse_triple,
        ),
        BuildField(
            "truncation",
            "optimization.truncation",
            "--truncation",
            Truncation.TRUNCATE.value,
            "texts over the sequence maximum: truncated or refused",
            lambda c: c.truncation.value,
            choices=Truncation,
        ),
        BuildField(
            "calibration_source",
            "optimization.calibration.source",
            "--calibration",
            None,
            "texts: file:// or s3:// (.txt/.json/.jsonl/.csv) or a JSON list (default: built-in corpus)",
            lambda c: c.calibration.source,
        ),
        BuildField(
            "calibration_column",
            "optimization.calibration.column",
            "--calibration-column",
            "text",
            "column holding the texts in .json/.jsonl/.csv sources",
            lambda c: c.calibration.column,
        ),
        BuildField(
            "calibration_pair_column",
            "optimization.calibration.pairColumn",
            "--calibration-pair-column",
            None,
            "column holding the second texts of pairs: a pair model is calibrated and judged on pairs",
            lambda c: c.calibration.pair_column,
        ),
        BuildField(
            "calibration_samples",
            "optimization.calibration.samples",
            "--calibration-samples",
            256,
            "calibration texts to use",
            lambda c: c.calibration.samples,
            parse=int,
        ),
        BuildField(
            "calibration_method",
            "optimization.calibration.method",
            "--calibration-method",
            CalibrationMethod.PERCENTILE.value,
            "activation range estimator for static int8",
            lambda c: c.calibration.method.value,
            choices=CalibrationMethod,
        ),
        BuildField(
            "evaluation_source",
            "optimization.evaluation.source",
            "--evaluation",
            None,
            "labeled held-out data: file://, s3:// or hf:// (a dataset) .jsonl/.json/.csv/.parquet, "
            "or a JSON list of rows",
            lambda c: c.evaluation.source,
        ),
        BuildField(
            "evaluation_text_column",
            "optimization.evaluation.textColumn",
            "--evaluation-text-column",
            "text",
            "column holding the texts (question-answering: the questions)",
            lambda c: c.evaluation.text_column,
        ),
        BuildField(
            "evaluation_text_pair_column",
            "optimization.evaluation.textPairColumn",
            "--evaluation-text-pair-column",
            None,
            "column holding the second texts of pairs (question-answering: the contexts)",
            lambda c: c.evaluation.text_pair_column,
        ),
        BuildField(
            "evaluation_label_column",
            "optimization.evaluation.labelColumn",
            "--evaluation-label-column",
            "label",
            "column holding the labels: names or ids, tag lists or spans, answers",
            lambda c: c.evaluation.label_column,
        ),
        BuildField(
            "evaluation_samples",
            "optimization.evaluation.samples",
            "--evaluation-samples",
            1000,
            "labeled examples to score, at most",
            lambda c: c.evaluation.samples,
            parse=int,
        ),
        BuildField(
            "gate_metric",
            "optimization.accuracyGate.metric",
            "--gate-metric",
            None,
            "accuracy gate metric (default: the task's own)",
            lambda c: _value(c.gate.metric),
            choices=GateMetric,
        ),
        BuildField(
            "max_drop",
            "optimization.accuracyGate.maxDrop",
            "--max-drop",
            None,
            "largest accepted drop against fp32 as a fraction, 0.004 = 0.4 points "
            "(default: 0.01; neighbours: 0.075)",
            lambda c: c.gate.max_drop,
            parse=float,
        ),
        BuildField(
            "benchmark_seconds",
            "optimization.benchmarkSeconds",
            "--benchmark-seconds",
            3.0,
            "seconds of interleaved timing per contender and shape (PyTorch and each candidate that "
            "passed the gate); less builds faster with noisier speed figures",
            lambda c: c.benchmark_seconds,
            parse=float,
        ),
        BuildField(
            "s3_endpoint",
            "storage.endpoint",
            "--s3-endpoint",
            None,
            "S3 endpoint URL (credentials from AWS_* variables)",
            lambda c: c.storage.endpoint,
        ),
    )


def defaults() -> dict[str, Any]:
    """Every optional setting's default, by key."""
    return {f.key: f.default for f in build_fields() if not f.required}


def raw_values(config: Any) -> dict[str, Any]:
    """The raw settings that `parse_build_config(**raw_values(config))` turns back into `config`."""
    return {f.key: f.read(config) for f in build_fields()}


def build_arguments(config: Any) -> list[str]:
    """`kubeformer build` arguments for a BuildConfig: MODEL first, then every setting that is set."""
    values = raw_values(config)
    fields = sorted(build_fields(), key=lambda f: f.flag is not None)
    return [f.to_arg(values[f.key]) for f in fields if values[f.key] is not None]


def values_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Raw settings present in a custom resource's spec; absent ones are left to the defaults.

    Inline calibration texts (`calibration.texts`) and evaluation rows (`evaluation.examples`) travel
    as the JSON lists `--calibration` and `--evaluation` accept.
    """
    values = {f.key: f.from_spec(spec) for f in build_fields() if f.spec_path}
    optimization = spec.get("optimization") or {}
    for section, inline, key in (
        ("calibration", "texts", "calibration_source"),
        ("evaluation", "examples", "evaluation_source"),
    ):
        rows = (optimization.get(section) or {}).get(inline)
        if rows and values.get(key) is None:
            values[key] = json.dumps(list(rows))
    return {key: value for key, value in values.items() if value is not None}
