import json

import pytest

from kubeformer_builder.calibration import (
    builtin_corpus,
    load_texts,
    parse_inline,
    read_texts_file,
    split_texts,
)
from kubeformer_builder.config import Calibration, CalibrationMethod
from kubeformer_builder.errors import SourceError


def test_builtin_corpus_has_short_and_long_texts():
    texts = builtin_corpus()
    lengths = sorted(len(t.split()) for t in texts)
    assert len(texts) > 150 and lengths[0] < 12 and lengths[-1] > 60


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("texts.txt", "first text\nsecond text\n\n"),
        ("texts.json", json.dumps(["first text", "second text"])),
        ("texts.jsonl", '{"text": "first text"}\n{"text": "second text"}\n'),
        ("texts.csv", "id,text\n1,first text\n2,second text\n"),
    ],
)
def test_reads_every_supported_format(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    assert read_texts_file(path, "text") == ["first text", "second text"]


def test_wrong_type_and_missing_column_are_named(tmp_path):
    numbers = tmp_path / "numbers.json"
    numbers.write_text(json.dumps([1, 2]))
    with pytest.raises(SourceError, match="row 0 holds int, expected text"):
        read_texts_file(numbers, "text")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"sentence": "x"}\n')
    with pytest.raises(SourceError, match="has no column 'text'"):
        read_texts_file(rows, "text")


def test_inline_list_and_bad_inline():
    assert parse_inline('["a b", "c d"]') == ["a b", "c d"]
    with pytest.raises(SourceError, match="not valid JSON"):
        parse_inline("[oops")


def test_split_is_deterministic_and_disjoint():
    texts = [f"text number {i}" for i in range(100)]
    first, second = split_texts(texts, 50), split_texts(texts, 50)
    assert first == second
    assert not set(first.calibration) & set(first.held_out)
    assert len(first.held_out) == 25 and len(first.calibration) == 50


def test_too_few_texts_are_refused():
    with pytest.raises(SourceError, match="need at least 16"):
        split_texts(["only one"], 8)


def test_unreadable_source_directory(tmp_path):
    with pytest.raises(SourceError, match="holds no texts"):
        load_texts(Calibration("file:///empty", "text", 256, CalibrationMethod.PERCENTILE), tmp_path)
