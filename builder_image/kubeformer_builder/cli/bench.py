"""`kubeformer bench`: a table (or --json) of PyTorch eager against every variant."""

from __future__ import annotations

import argparse
import json

from kubeformer_builder import progress
from kubeformer_builder.cli.options import add_model_args, config_from_args

NAME = "bench"
HELP = "benchmark PyTorch eager fp32 against every built variant on the same inputs"


def _shape(value: str) -> tuple[int, int]:
    batch, _, sequence = value.partition("x")
    try:
        return int(batch), int(sequence)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected BATCHxSEQUENCE, e.g. 8x128") from None


def add_args(parser: argparse.ArgumentParser) -> None:
    add_model_args(parser)
    parser.add_argument(
        "--shapes",
        type=_shape,
        nargs="+",
        default=None,
        metavar="BxS",
        help="shapes to time (default 1x16 1x128 8x128 32x128)",
    )
    parser.add_argument(
        "--budget", type=float, default=4.0, help="seconds of timed runs per variant and shape"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--output-json", help="also write the JSON report to this file")


def run(args: argparse.Namespace) -> int:
    from kubeformer_builder.bench import DEFAULT_SHAPES, format_table, run_bench

    progress.configure(args.verbose)
    report = run_bench(config_from_args(args), tuple(args.shapes or DEFAULT_SHAPES), args.budget)
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0
