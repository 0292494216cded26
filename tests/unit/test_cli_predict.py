"""`kubeformer predict` argument handling that needs no server: the pairs file and the modes."""

from __future__ import annotations

import argparse

import pytest

from kubeformer_builder.cli import predict
from kubeformer_builder.errors import ConfigError


def test_pairs_file_is_read_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "pairs.jsonl"
    good.write_text('{"text": "a", "text_pair": "b"}\n\n{"text": "c", "text_pair": "d", "label": 1}\n')
    assert predict.read_pairs_file(good) == [("a", "b"), ("c", "d")]
    for content, message in (
        ('{"text": "a"}\n', 'line 1 needs string fields "text" and "text_pair"'),
        ('{"text": "a", "text_pair": "b"}\nnot json\n', "line 2 is not JSON"),
    ):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        with pytest.raises(ConfigError, match=message):
            predict.read_pairs_file(bad)
    with pytest.raises(ConfigError, match="--pairs-file: cannot read"):
        predict.read_pairs_file(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    "argv",
    [
        ["http://x:1"],
        ["http://x:1", "text", "--pair", "a", "b"],
        ["http://x:1", "--pair", "a", "b", "--rerank", "q", "d"],
    ],
)
def test_exactly_one_kind_of_input_is_required(argv):
    parser = argparse.ArgumentParser()
    predict.add_args(parser)
    with pytest.raises(ConfigError, match="exactly one of them"):
        predict.predict_answers(None, parser.parse_args(argv))
