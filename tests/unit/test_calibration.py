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


PAIR_ROWS = [
    {"premise": "A man plays.", "hypothesis": "Someone plays."},
    {"premise": "  ", "hypothesis": "blank premise is skipped"},
    {"premise": "It rains.", "hypothesis": "The sun shines."},
]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("pairs.json", json.dumps(PAIR_ROWS)),
        ("pairs.jsonl", "\n".join(json.dumps(row) for row in PAIR_ROWS)),
        (
            "pairs.csv",
            "premise,hypothesis\n" + "\n".join(f"{r['premise']},{r['hypothesis']}" for r in PAIR_ROWS),
        ),
    ],
)
def test_pairs_are_read_from_two_columns(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    expected = [("A man plays.", "Someone plays."), ("It rains.", "The sun shines.")]
    assert read_texts_file(path, "premise", "hypothesis") == expected


def test_pairs_need_both_columns_and_a_tabular_file(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"premise": "only one side"}\n')
    with pytest.raises(SourceError, match=r"calibration\.pairColumn: .* row 0 has no column 'hypothesis'"):
        read_texts_file(rows, "premise", "hypothesis")
    plain = tmp_path / "texts.txt"
    plain.write_text("a line\n")
    with pytest.raises(SourceError, match=r"calibration\.pairColumn: .* is plain text"):
        read_texts_file(plain, "text", "hypothesis")
    with pytest.raises(SourceError, match=r"calibration\.pairColumn: inline list row 0 is not an object"):
        parse_inline(json.dumps(["a string"]), "hypothesis")


def test_pair_samples_split_and_load_like_texts(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "\n".join(json.dumps({"text": f"premise {i}", "b": f"hypothesis {i}"}) for i in range(40))
    )
    pairs = load_texts(Calibration(f"file://{path}", "text", 16, CalibrationMethod.PERCENTILE, "b"), path)
    split = split_texts(pairs, 16)
    assert all(isinstance(p, tuple) and len(p) == 2 for p in split.calibration + split.held_out)
    assert not set(split.calibration) & set(split.held_out)
