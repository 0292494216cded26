"""Flags shared by the commands that build (build, bench, run), parsed into a BuildConfig once."""

from __future__ import annotations

import argparse

from kubeformer_builder.config import (
    Backend,
    BuildConfig,
    CalibrationMethod,
    GateMetric,
    Precision,
    Task,
    Truncation,
    parse_build_config,
)
from kubeformer_builder.errors import ConfigError


def _choices(enum) -> list[str]:
    return [member.value for member in enum]


def _triple(value: str) -> tuple[int, int, int]:
    parts = value.split(",")
    try:
        numbers = tuple(int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected MIN,OPT,MAX integers") from None
    if len(numbers) != 3:
        raise argparse.ArgumentTypeError(f"{value!r}: expected three numbers MIN,OPT,MAX")
    return numbers  # type: ignore[return-value]


def add_model_args(parser: argparse.ArgumentParser, task_required: bool = True) -> None:
    parser.add_argument("model", metavar="MODEL", help="file://PATH, hf://ORG/NAME or s3://BUCKET/PATH")
    parser.add_argument("--task", required=task_required, choices=_choices(Task))
    parser.add_argument("--backend", default=Backend.ONNXRUNTIME.value, choices=_choices(Backend))
    parser.add_argument("--precision", default=Precision.AUTO.value, choices=_choices(Precision))
    parser.add_argument("--revision", default="main", help="hub revision (branch, tag or commit)")
    parser.add_argument("--tokenizer", help="tokenizer source if not the model's own")
    parser.add_argument("--name", help="Triton model name (default: from the source)")
    parser.add_argument("--batch", type=_triple, default=(1, 8, 32), metavar="MIN,OPT,MAX")
    parser.add_argument("--sequence", type=_triple, default=(1, 128, 256), metavar="MIN,OPT,MAX")
    parser.add_argument(
        "--calibration", help="texts: file:// or s3:// (.txt/.json/.jsonl/.csv) or a JSON list"
    )
    parser.add_argument("--calibration-column", default="text")
    parser.add_argument("--calibration-samples", type=int, default=256)
    parser.add_argument("--calibration-method", default="percentile", choices=_choices(CalibrationMethod))
    parser.add_argument("--gate-metric", choices=_choices(GateMetric), help="default: the task's own")
    parser.add_argument("--max-drop", type=float, default=0.01, help="largest accepted accuracy drop vs fp32")
    parser.add_argument("--truncation", default="truncate", choices=_choices(Truncation))
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL (credentials from AWS_* variables)")
    parser.add_argument("-v", "--verbose", action="store_true")


def config_from_args(args: argparse.Namespace, default_task: str | None = None) -> BuildConfig:
    task = args.task or default_task
    if task is None:
        raise ConfigError("model.task: required")
    return parse_build_config(
        source=args.model,
        task=task,
        backend=args.backend,
        precision=args.precision,
        revision=args.revision,
        tokenizer=args.tokenizer,
        name=args.name,
        batch=args.batch,
        sequence=args.sequence,
        calibration_source=args.calibration,
        calibration_column=args.calibration_column,
        calibration_samples=args.calibration_samples,
        calibration_method=args.calibration_method,
        gate_metric=args.gate_metric,
        max_drop=args.max_drop,
        truncation=args.truncation,
        s3_endpoint=args.s3_endpoint,
    )
