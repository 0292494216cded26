"""`kubeformer serve DIR|s3://...`: a real Triton server on this machine serving a built artifact."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from kubeformer_builder import progress
from kubeformer_builder.serving.api.settings import DEFAULT_PORT, ApiSettings, Listen
from kubeformer_builder.serving.overrides import InstanceKind, Overrides
from kubeformer_builder.serving.serve import ServeConfig, serve
from kubeformer_builder.serving.tritonserver import Endpoints

NAME = "serve"
HELP = (
    "Serve built artifacts with Triton (HTTP 8000, gRPC 8001, metrics 8002) and the client API front "
    "(OpenAI /v1/embeddings, /embed, /rerank, /predict on 8080) until Ctrl-C or SIGTERM."
)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def add_serving_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared with `kubeformer run`: where Triton listens and the serving-time overrides."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL for s3:// artifacts (credentials: AWS_* env)")
    group = add_api_args(parser)
    group.add_argument("--no-api", action="store_true", help="serve Triton only, without the API front")
    add_override_args(parser)


def add_api_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The client API front's own flags (kubeformer serve, run and api)."""
    group = parser.add_argument_group("client API front (OpenAI /v1/embeddings, /embed, /rerank, /predict)")
    group.add_argument("--api-port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    group.add_argument(
        "--api-max-inputs", type=int, default=ApiSettings.max_inputs, help="texts per request (more: 413)"
    )
    group.add_argument(
        "--api-max-body-bytes",
        type=int,
        default=ApiSettings.max_body_bytes,
        help="largest request body (more: 413, refused before it is read)",
    )
    return group


def api_settings_from_args(args: argparse.Namespace) -> ApiSettings:
    return ApiSettings(max_inputs=args.api_max_inputs, max_body_bytes=args.api_max_body_bytes)


def add_override_args(parser: argparse.ArgumentParser) -> None:
    """The serving overrides, shared with `kubeformer fetch` (the cluster applies them there)."""
    group = parser.add_argument_group("serving overrides (applied to a verified copy, no rebuild)")
    group.add_argument(
        "--instance-kind",
        choices=[k.value for k in InstanceKind],
        default="auto",
        help="auto: GPU if present",
    )
    group.add_argument("--instances", type=int, help="engine instances (parallel executions)")
    group.add_argument(
        "--max-queue-delay-us", type=int, help="dynamic batching: longest wait to fill a batch"
    )
    group.add_argument("--preferred-batch-sizes", type=_sizes, help="dynamic batching, e.g. 8,16")
    group.add_argument("--intra-op-threads", type=int, help="ONNX Runtime threads per instance (0: default)")
    group.add_argument(
        "--doc-stride",
        type=int,
        help="question answering: tokens shared by neighbouring context windows "
        "(default: min(max sequence // 2, 128))",
    )


def overrides_from_args(args: argparse.Namespace) -> Overrides:
    return Overrides(
        instance_kind=InstanceKind(args.instance_kind),
        instance_count=args.instances,
        max_queue_delay_us=args.max_queue_delay_us,
        preferred_batch_sizes=args.preferred_batch_sizes,
        intra_op_threads=args.intra_op_threads,
        doc_stride=args.doc_stride,
    )


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources", nargs="+", metavar="DIR|s3://...", help="artifact(s) written by kubeformer build"
    )
    add_serving_args(parser)


def serve_config(args: argparse.Namespace, sources: tuple[str, ...]) -> ServeConfig:
    return ServeConfig(
        sources=sources,
        endpoints=Endpoints(args.host, args.http_port, args.grpc_port, args.metrics_port),
        overrides=overrides_from_args(args),
        s3_endpoint=args.s3_endpoint,
        api=None if args.no_api else Listen(args.host, args.api_port),
        api_settings=api_settings_from_args(args),
    )


def _announcer(api: Listen | None):
    def announce(endpoints: Endpoints) -> None:
        front = f", {api.url} (API: /v1/embeddings, /embed, /rerank, /predict)" if api else ""
        print(
            f"kubeformer serve: ready on {endpoints.http} (HTTP), {endpoints.grpc} (gRPC), "
            f"{endpoints.metrics}{front}",
            file=sys.stderr,
            flush=True,
        )

    return announce


def serve_until_signal(config: ServeConfig) -> int:
    """Serve with Triton's log on stderr; SIGINT or SIGTERM stops Triton cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    serve(config, stop, log=log, on_ready=_announcer(config.api))
    return 0


def run(args: argparse.Namespace) -> int:
    progress.configure()  # warnings (a CPU unlike the build's) reach stderr with a timestamp
    return serve_until_signal(serve_config(args, tuple(args.sources)))
