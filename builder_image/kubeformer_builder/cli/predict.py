"""`kubeformer predict URL TEXT...`: ask a served model, print readable answers as JSON.

Pairs (`--pair A B`, `--pairs-file F`) and `--rerank QUERY DOC...` need a text-classification model
built with TEXT_PAIR (every text-classification build has it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kubeformer_builder.errors import ConfigError
from kubeformer_builder.serving.client import Predictor

NAME = "predict"
HELP = "Send texts to a kubeformer Triton server (http:// or grpc:// URL) and print the answers as JSON."


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="http://HOST:PORT or grpc://HOST:PORT")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts (questions for question answering)")
    parser.add_argument("--model", help="ensemble name (default: the only one served)")
    parser.add_argument("--context", help="the passage questions are about (question answering)")
    pairs = parser.add_argument_group("sentence pairs (text-classification)")
    pairs.add_argument(
        "--pair", nargs=2, action="append", metavar=("TEXT", "TEXT_PAIR"), help="a pair; repeat for more"
    )
    pairs.add_argument(
        "--pairs-file", type=Path, help='JSON lines of {"text": ..., "text_pair": ...}, sent as one request'
    )
    pairs.add_argument(
        "--rerank", nargs="+", metavar="QUERY DOC", help="score documents against the query, best first"
    )
    pairs.add_argument("--top-n", type=int, help="rerank: return only the best N documents")
    pairs.add_argument("--return-documents", action="store_true", help="rerank: include each document's text")


def read_pairs_file(path: Path) -> list[tuple[str, str]]:
    """(text, text_pair) from JSON lines; a bad line is refused with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--pairs-file: cannot read {path}: {error}") from error
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--pairs-file: {path} line {number} is not JSON: {error}") from error
        if not (
            isinstance(row, dict)
            and isinstance(row.get("text"), str)
            and isinstance(row.get("text_pair"), str)
        ):
            raise ConfigError(
                f'--pairs-file: {path} line {number} needs string fields "text" and "text_pair"'
            )
        pairs.append((row["text"], row["text_pair"]))
    return pairs


def predict_answers(predictor: Predictor, args: argparse.Namespace) -> list[dict]:
    modes = [bool(args.texts), bool(args.pair or args.pairs_file), bool(args.rerank)]
    if sum(modes) != 1:
        raise ConfigError(
            "give texts, pairs (--pair/--pairs-file) or --rerank QUERY DOC..., exactly one of them"
        )
    if args.rerank:
        from kubeformer_builder.serving.rerank import rerank

        if len(args.rerank) < 2:
            raise ConfigError("--rerank: give the query and at least one document")
        query, *documents = args.rerank
        return rerank(predictor, query, documents, args.top_n, args.return_documents)
    if args.pair or args.pairs_file:
        pairs = [tuple(pair) for pair in args.pair or []]
        return predictor.predict_pairs(pairs + (read_pairs_file(args.pairs_file) if args.pairs_file else []))
    return predictor.predict(args.texts, args.context)


def run(args: argparse.Namespace) -> int:
    with Predictor(args.url, args.model) as predictor:
        print(json.dumps(predict_answers(predictor, args), indent=2, ensure_ascii=False))
    return 0
