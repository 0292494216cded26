"""`kubeformer build`: one JSON result on stdout and in the termination log, progress on stderr."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from kubeformer_builder import progress
from kubeformer_builder.cli.options import add_model_args, config_from_args
from kubeformer_builder.errors import KubeformerError

NAME = "build"
HELP = "export, optimize, quantize and compile a model into a Triton repository"
# Kubernetes reads a container's termination message from here (at most 4096 bytes).
TERMINATION_LOG = Path(os.environ.get("KUBEFORMER_TERMINATION_LOG", "/dev/termination-log"))
_TERMINATION_LIMIT = 4096


def add_args(parser: argparse.ArgumentParser) -> None:
    add_model_args(parser)
    parser.add_argument("--output", required=True, help="artifact directory or s3://BUCKET/PREFIX")


def run(args: argparse.Namespace) -> int:
    from kubeformer_builder.pipeline import build

    progress.configure(args.verbose)
    try:
        result = build(config_from_args(args), args.output).to_dict()
    except KubeformerError as error:
        emit({"status": "failed", "reason": error.reason, "message": str(error)})
        raise
    except Exception as error:  # a bug: still tell the operator something readable
        emit({"status": "failed", "reason": "InternalError", "message": f"{type(error).__name__}: {error}"})
        raise
    emit(result)
    return 0


def emit(result: dict) -> None:
    text = json.dumps(result, sort_keys=True)
    print(text, file=sys.stdout, flush=True)
    if TERMINATION_LOG.parent.is_dir() and (
        TERMINATION_LOG.exists() or os.environ.get("KUBEFORMER_TERMINATION_LOG")
    ):
        compact = dict(result)
        compact.pop("versions", None)
        compact_text = json.dumps(compact, sort_keys=True)
        if len(compact_text.encode()) > _TERMINATION_LIMIT:
            short = {k: compact[k] for k in ("status", "reason", "cache_key") if k in compact}
            short["message"] = str(compact.get("message", "result too large, see the Job log"))[:3000]
            compact_text = json.dumps(short, sort_keys=True)
        TERMINATION_LOG.write_text(compact_text)
