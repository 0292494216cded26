"""`kubeformer fetch s3://... DEST`: download an artifact and verify every sha256 (Triton init container)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kubeformer_builder.serving.fetch import fetch_artifact_to

NAME = "fetch"
HELP = "Download an artifact and verify every file's sha256; exits non-zero naming a bad file."


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="s3://...|DIR", help="artifact location (written by kubeformer build)"
    )
    parser.add_argument("dest", type=Path, help="new or empty directory to fetch into")
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL (credentials: AWS_* environment variables)")


def run(args: argparse.Namespace) -> int:
    manifest = fetch_artifact_to(args.source, args.dest, args.s3_endpoint)
    result = {"artifact": str(args.dest), "name": manifest.name, "files": len(manifest.files)}
    print(json.dumps({**result, "bytes": manifest.size_bytes}))
    return 0
