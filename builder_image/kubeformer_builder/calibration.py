"""Texts for calibration and for the accuracy gate.

A build without a calibration source uses the built-in English corpus, expanded into
single sentences and multi-sentence passages so both short and long sequences are covered.
Held-out gate texts never overlap the calibration texts. With `pairColumn` every sample is a
(text, text_pair) pair, so a pair model is calibrated and judged on pairs.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kubeformer_builder.config import Calibration
from kubeformer_builder.errors import SourceError

_SEED = 20261124

Text = str | tuple[str, str]  # a text, or a (text, text_pair) pair for pair classifiers


def text_length(text: Text) -> int:
    return len(text) if isinstance(text, str) else len(text[0]) + len(text[1])


def lengthen(text: Text, times: int) -> Text:
    """The text (each side of a pair) repeated, to fill a long sequence for timing."""
    return text * times if isinstance(text, str) else (text[0] * times, text[1] * times)


@dataclass(frozen=True)
class TextSplit:
    calibration: tuple[Text, ...]
    held_out: tuple[Text, ...]


def builtin_corpus() -> list[str]:
    lines = resources.files("kubeformer_builder").joinpath("data/corpus.txt").read_text().splitlines()
    sentences = [line.strip() for line in lines if line.strip()]
    rng = random.Random(_SEED)
    passages = []
    for size in (2, 3, 5, 8):
        for _ in range(len(sentences) // size):
            passages.append(" ".join(rng.sample(sentences, size)))
    return sentences + passages


def _cell(row, column: str, field: str, origin: str, index: int) -> str:
    value = row.get(column) if isinstance(row, dict) else row
    if isinstance(row, dict) and column not in row:
        raise SourceError(f"calibration.{field}: {origin} row {index} has no column {column!r}")
    if not isinstance(value, str):
        raise SourceError(
            f"calibration.source: {origin} row {index} holds {type(value).__name__}, expected text"
        )
    return value


def _texts_from_rows(rows: list, column: str, origin: str, pair_column: str | None = None) -> list[Text]:
    """The column's non-blank texts, or (text, text_pair) pairs where both are non-blank."""
    texts: list[Text] = []
    for index, row in enumerate(rows):
        value = _cell(row, column, "column", origin, index)
        if pair_column is None:
            if value.strip():
                texts.append(value)
            continue
        if not isinstance(row, dict):
            raise SourceError(
                f"calibration.pairColumn: {origin} row {index} is not an object with columns "
                f"{column!r} and {pair_column!r}"
            )
        second = _cell(row, pair_column, "pairColumn", origin, index)
        if value.strip() and second.strip():
            texts.append((value, second))
    return texts


def read_texts_file(path: Path, column: str, pair_column: str | None = None) -> list[Text]:
    """Plain text (a line each), JSON (a list), JSON Lines or CSV (the named column, and the pair
    column where pairs are wanted: plain text cannot hold pairs)."""
    origin = str(path)
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"calibration.source: cannot read {origin}: {exc}") from exc
    try:
        if path.suffix == ".json":
            rows = json.loads(content)
            if not isinstance(rows, list):
                raise SourceError(f"calibration.source: {origin} must hold a JSON list")
            return _texts_from_rows(rows, column, origin, pair_column)
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in content.splitlines() if line.strip()]
            return _texts_from_rows(rows, column, origin, pair_column)
    except json.JSONDecodeError as exc:
        raise SourceError(f"calibration.source: {origin} is not valid JSON: {exc}") from exc
    if path.suffix == ".csv":
        return _texts_from_rows(list(csv.DictReader(content.splitlines())), column, origin, pair_column)
    if pair_column is not None:
        raise SourceError(
            f"calibration.pairColumn: {origin} is plain text; pairs need a .json, .jsonl or .csv file "
            f"with columns {column!r} and {pair_column!r}"
        )
    return [line for line in content.splitlines() if line.strip()]


def parse_inline(source: str, pair_column: str | None = None) -> list[Text]:
    """An inline JSON list of strings (or of {"text", pair_column} objects for pairs)."""
    try:
        rows = json.loads(source)
    except json.JSONDecodeError as exc:
        raise SourceError(f"calibration.source: inline list is not valid JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise SourceError("calibration.source: inline value must be a JSON list of strings")
    return _texts_from_rows(rows, "text", "inline list", pair_column)


def split_texts(texts: list[Text], calibration_samples: int) -> TextSplit:
    """Shuffle deterministically; a quarter (at least 16, at most 128) is held out for the gate."""
    if len(texts) < 16:
        raise SourceError(f"calibration.source: need at least 16 non-empty texts, found {len(texts)}")
    shuffled = list(texts)
    random.Random(_SEED).shuffle(shuffled)
    held = min(128, max(16, len(shuffled) // 4))
    return TextSplit(tuple(shuffled[held : held + calibration_samples]), tuple(shuffled[:held]))


def load_texts(calibration: Calibration, local_source: Path | None) -> list[Text]:
    """Texts (pairs with a pair column) from the resolved source (a local file or directory), an
    inline list, or the corpus."""
    source = calibration.source
    if source is None:
        return builtin_corpus()
    if source.lstrip().startswith("["):
        return parse_inline(source, calibration.pair_column)
    if local_source is None:
        raise SourceError(f"calibration.source: {source!r} could not be resolved")
    files = (
        [local_source]
        if local_source.is_file()
        else sorted(p for p in local_source.rglob("*") if p.is_file())
    )
    texts = [
        text for path in files for text in read_texts_file(path, calibration.column, calibration.pair_column)
    ]
    if not texts:
        raise SourceError(f"calibration.source: {source} holds no texts")
    return texts
