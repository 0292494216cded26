"""`kubeformer api`: the client API front alone, in front of a Triton that runs elsewhere (the pod's
Triton container, over loopback); `kubeformer serve` starts the same front beside its own Triton."""

from __future__ import annotations

import argparse
from pathlib import Path

from kubeformer_builder.cli.serve import add_api_args, api_settings_from_args

NAME = "api"
HELP = "Serve OpenAI /v1/embeddings, /embed, /rerank and /predict in front of a running Triton."


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--triton",
        default="grpc://127.0.0.1:8001",
        help="Triton URL, grpc:// or http:// (default: loopback gRPC)",
    )
    parser.add_argument(
        "--repository",
        type=Path,
        action="append",
        required=True,
        help="model repository Triton serves (the front reads each ensemble's tokenizer there); repeatable",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add_api_args(parser)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from kubeformer_builder.serving.api.server import run_forever
    from kubeformer_builder.serving.api.settings import Listen

    settings = dataclasses.replace(
        api_settings_from_args(args), triton_url=args.triton, repositories=tuple(args.repository)
    )
    run_forever(settings, Listen(args.host, args.api_port))
    return 0
