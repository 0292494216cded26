"""`kubeformer fetch s3://... DEST`: download an artifact, verify every sha256, apply serving overrides.

This is the Triton pods' init container: the overrides (instances, batching) are the CR's serving
fields, applied to the fetched copy so that changing them rolls the pods without a rebuild.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kubeformer_builder import progress
from kubeformer_builder.cli.serve import add_override_args, overrides_from_args
from kubeformer_builder.manifest import REPOSITORY_DIR
from kubeformer_builder.serving.fetch import fetch_artifact_to

NAME = "fetch"
HELP = "Download an artifact, verify every file's sha256 (exits non-zero naming a bad file), apply overrides."


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="s3://...|DIR", help="artifact location (written by kubeformer build)"
    )
    parser.add_argument("dest", type=Path, help="new or empty directory to fetch into")
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL (credentials: AWS_* environment variables)")
    parser.add_argument(
        "--replace", action="store_true", help="DEST is ours: remove what an earlier attempt left there first"
    )
    add_override_args(parser)


def run(args: argparse.Namespace) -> int:
    from kubeformer_builder.serving.overrides import InstanceKind, apply_overrides, has_gpu

    progress.configure()  # the init container's log: a CPU unlike the build's is warned about
    manifest = fetch_artifact_to(args.source, args.dest, args.s3_endpoint, replace=args.replace)
    overrides = overrides_from_args(args)
    # An init container sees no GPU even when Triton's container gets one: an explicit kind is trusted.
    gpu = overrides.instance_kind is InstanceKind.GPU or (
        overrides.instance_kind is InstanceKind.AUTO and has_gpu()
    )
    apply_overrides(args.dest / REPOSITORY_DIR, overrides, gpu)
    result = {"artifact": str(args.dest), "name": manifest.name, "files": len(manifest.files)}
    print(json.dumps({**result, "bytes": manifest.size_bytes}))
    return 0
