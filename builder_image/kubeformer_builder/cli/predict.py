"""`kubeformer predict URL TEXT...`: ask a served model, print readable answers as JSON."""

from __future__ import annotations

import argparse
import json

from kubeformer_builder.serving.client import Predictor

NAME = "predict"
HELP = "Send texts to a kubeformer Triton server (http:// or grpc:// URL) and print the answers as JSON."


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="http://HOST:PORT or grpc://HOST:PORT")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="texts (questions for question answering)")
    parser.add_argument("--model", help="ensemble name (default: the only one served)")
    parser.add_argument("--context", help="the passage questions are about (question answering)")


def run(args: argparse.Namespace) -> int:
    with Predictor(args.url, args.model) as predictor:
        print(json.dumps(predictor.predict(args.texts, args.context), indent=2, ensure_ascii=False))
    return 0
