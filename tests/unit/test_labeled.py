"""The user's labeled data: every file format and the inline list, label checks, and scoring."""

import csv
import json

import numpy as np
import pytest

from kubeformer_builder import labeled
from kubeformer_builder.config import GateMetric, Task, parse_build_config
from kubeformer_builder.errors import ConfigError, SourceError
from tests.fixtures.models import FAMILIES, LABELS

ROWS = [
    {"text": "the food was great", "pair": "I liked it", "label": "positive"},
    {"text": "terrible service", "pair": "never again", "label": 0},
    {"text": "it was fine", "pair": "nothing special", "label": "1"},
]
NAMES = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def tokenizer():
    return FAMILIES["bert"][1]()


def write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


def evaluation_config(source: str, **overrides):
    values = {"evaluation_source": source, "evaluation_text_pair_column": "pair", **overrides}
    return parse_build_config(source="file:///m", task="text-classification", **values)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_file_format_loads_the_same_examples(suffix, tmp_path, tokenizer):
    rows = [{**row, "label": str(row["label"])} for row in ROWS] if suffix in (".csv", ".parquet") else ROWS
    config = evaluation_config(f"file://{write(tmp_path / f'test{suffix}', rows)}")
    found = labeled.load(config, tokenizer, LABELS[Task.TEXT_CLASSIFICATION], NAMES, tmp_path)
    assert found.labels == [2, 0, 1]
    batch = found.batches[0]
    assert set(batch) == set(NAMES) and batch["input_ids"].shape[0] == 3
    assert batch["token_type_ids"].max() == 1  # the second texts are segment 1, as the tokenizer pairs them


def test_inline_rows_and_samples_limit(tmp_path, tokenizer):
    config = evaluation_config(json.dumps(ROWS * 10), evaluation_samples=25)
    found = labeled.load(config, tokenizer, LABELS[Task.TEXT_CLASSIFICATION], NAMES, tmp_path)
    assert len(found) == 25 and [len(b["input_ids"]) for b in found.batches] == [8, 8, 8, 1]


def test_a_directory_of_data_files_is_read_in_order(tmp_path, tokenizer):
    data = tmp_path / "dataset"
    (data / "data").mkdir(parents=True)
    write(data / "data" / "a.jsonl", ROWS[:1])
    write(data / "data" / "b.jsonl", ROWS[1:])
    (data / "README.md").write_text("not data")
    found = labeled.load(
        evaluation_config(f"file://{data}"), tokenizer, LABELS[Task.TEXT_CLASSIFICATION], NAMES, tmp_path
    )
    assert found.labels == [2, 0, 1]


def test_unknown_labels_are_refused_naming_the_field(tmp_path, tokenizer):
    rows = [*ROWS, {"text": "x", "pair": "y", "label": "sarcastic"}, {"text": "x", "pair": "y", "label": 7}]
    with pytest.raises(
        SourceError, match=r"optimization\.evaluation\.labelColumn: .*'sarcastic', 7"
    ) as caught:
        labeled.load(
            evaluation_config(json.dumps(rows)), tokenizer, LABELS[Task.TEXT_CLASSIFICATION], NAMES, tmp_path
        )
    assert "0=negative, 1=neutral, 2=positive" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        (
            '{"text": "a", "label": 0}\n{"text": ',
            ".jsonl",
            r"evaluation\.source: cannot read .*JSONDecodeError",
        ),
        ("not parquet at all", ".parquet", r"evaluation\.source: cannot read .*test\.parquet"),
        (b"\xff\xfe\x00bad", ".csv", r"evaluation\.source: cannot read .*UnicodeDecodeError"),
        ('{"rows": []}', ".json", r"evaluation\.source: .* must hold a JSON list of rows"),
        ("", ".jsonl", r"evaluation\.source: .* holds no rows"),
    ],
)
def test_unreadable_sources_are_refused(content, suffix, expected, tmp_path, tokenizer):
    path = tmp_path / f"test{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SourceError, match=expected):
        labeled.load(
            evaluation_config(f"file://{path}"), tokenizer, LABELS[Task.TEXT_CLASSIFICATION], NAMES, tmp_path
        )


def test_missing_source_and_missing_columns_are_refused(tmp_path, tokenizer):
    labels = LABELS[Task.TEXT_CLASSIFICATION]
    with pytest.raises(
        SourceError, match=r"optimization\.evaluation\.source: file:///nowhere.jsonl does not exist"
    ):
        labeled.load(evaluation_config("file:///nowhere.jsonl"), tokenizer, labels, NAMES, tmp_path)
    with pytest.raises(SourceError, match=r"evaluation\.textPairColumn: row 0 has no value in column 'pair'"):
        labeled.load(
            evaluation_config(json.dumps([{"text": "a", "label": 0}])), tokenizer, labels, NAMES, tmp_path
        )
    config = evaluation_config(json.dumps(ROWS), evaluation_label_column="stars")
    with pytest.raises(SourceError, match=r"evaluation\.labelColumn: row 0 has no value in column 'stars'"):
        labeled.load(config, tokenizer, labels, NAMES, tmp_path)
    with pytest.raises(SourceError, match=r"evaluation\.source: row 0 is list"):
        labeled.load(evaluation_config(json.dumps([["a", 0]])), tokenizer, labels, NAMES, tmp_path)


def test_classification_accuracy_from_outputs(tmp_path, tokenizer):
    found = labeled.load(
        evaluation_config(json.dumps(ROWS)), tokenizer, LABELS[Task.TEXT_CLASSIFICATION], NAMES, tmp_path
    )
    logits = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # the last one is wrong
    assert found.score(GateMetric.ACCURACY, [(logits,)]) == pytest.approx(2 / 3)


def token_logits(found, tags_per_word):
    """Logits that give each word's first token the wanted tag id, other tokens O."""
    batch = found.batches[0]["input_ids"]
    logits = np.zeros((*batch.shape, 5))
    logits[..., 0] = 1.0
    for row, (words, tags) in enumerate(zip(found.extra, tags_per_word, strict=True)):
        seen = set()
        for position, word in enumerate(words):
            if word is not None and word not in seen:
                seen.add(word)
                logits[row, position, tags[word]] = 2.0
    return logits


def test_token_f1_from_tags_and_from_spans(tmp_path, tokenizer):
    rows = [
        {"text": "John Smith lives in Berlin", "label": ["B-PER", "I-PER", "O", "O", "B-LOC"]},
        {"text": ["Anna", "visited", "Paris"], "label": [1, 0, 3]},
        {"text": "Maria met Paul",
         "label": [{"start": 0, "end": 5, "label": "PER"}, {"start": 10, "end": 14, "label": "PER"}]},
    ]  # fmt: skip
    config = parse_build_config(
        source="file:///m", task="token-classification", evaluation_source=json.dumps(rows)
    )
    found = labeled.load(config, tokenizer, LABELS[Task.TOKEN_CLASSIFICATION], NAMES, tmp_path)
    assert found.labels[0] == {("PER", 0, 1), ("LOC", 4, 4)}
    assert found.labels[2] == {("PER", 0, 0), ("PER", 2, 2)}
    right = token_logits(found, [[1, 2, 0, 0, 3], [1, 0, 3], [1, 0, 1]])
    assert found.score(GateMetric.F1, [(right,)]) == 1.0
    # Berlin missed, Paul found as LOC: 4 of 5 predicted right, 4 of 6 gold found
    wrong = token_logits(found, [[1, 2, 0, 0, 0], [1, 0, 3], [1, 0, 3]])
    assert found.score(GateMetric.F1, [(wrong,)]) == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))


def test_token_labels_are_checked(tmp_path, tokenizer):
    labels = LABELS[Task.TOKEN_CLASSIFICATION]

    def load(rows):
        config = parse_build_config(
            source="file:///m", task="token-classification", evaluation_source=json.dumps(rows)
        )
        return labeled.load(config, tokenizer, labels, NAMES, tmp_path)

    with pytest.raises(SourceError, match="row 0 has 1 tags for 2 words"):
        load([{"text": "John Smith", "label": ["B-PER"]}])
    with pytest.raises(SourceError, match=r"labelColumn: labels the model does not know: 'B-ORG'"):
        load([{"text": "ACME Smith", "label": ["B-ORG", "B-PER"]}])
    with pytest.raises(SourceError, match=r"labelColumn: labels the model does not know: 'ORG'"):
        load([{"text": "ACME", "label": [{"start": 0, "end": 4, "label": "ORG"}]}])
    with pytest.raises(SourceError, match="span 9:12 covers no word"):
        load([{"text": "ACME", "label": [{"start": 9, "end": 12, "label": "PER"}]}])


def test_question_answering_exact_match_and_f1(tmp_path, tokenizer):
    rows = [
        {"question": "Where is the tower?", "context": "The tower stands in Paris today.",
         "answers": {"text": ["Paris"], "answer_start": [20]}},
        {"question": "Who wrote it?", "context": "It was written by Jane Austen.",
         "answers": ["Jane Austen"]},
    ]  # fmt: skip
    config = parse_build_config(
        source="file:///m", task="question-answering", evaluation_source=json.dumps(rows),
        evaluation_text_column="question", evaluation_text_pair_column="context",
        evaluation_label_column="answers", gate_metric="exact_match",
    )  # fmt: skip
    found = labeled.load(config, tokenizer, None, NAMES, tmp_path)
    starts, ends = (
        np.zeros(found.batches[0]["input_ids"].shape),
        np.zeros(found.batches[0]["input_ids"].shape),
    )
    for row, (context, answer) in enumerate(
        (("The tower stands in Paris today.", "Paris"), ("It was written by Jane Austen.", "Jane"))
    ):
        begin = context.index(answer)
        tokens = [
            t for t, o in enumerate(found.extra[row]) if o is not None and begin <= o[0] < begin + len(answer)
        ]
        starts[row, tokens[0]], ends[row, tokens[-1]] = 5.0, 5.0
        starts[row, 0] = 9.0  # outside the context: never an answer
    assert found.score(GateMetric.EXACT_MATCH, [(starts, ends)]) == 0.5
    assert found.score(GateMetric.F1, [(starts, ends)]) == pytest.approx((1.0 + 2 / 3) / 2)
    no_context = parse_build_config(
        source="file:///m", task="question-answering", evaluation_source=json.dumps(rows)
    )
    with pytest.raises(ConfigError, match=r"evaluation\.textPairColumn: question-answering needs"):
        labeled.load(no_context, tokenizer, None, NAMES, tmp_path)


def test_a_metric_that_does_not_fit_is_refused_before_reading(tmp_path, tokenizer):
    config = parse_build_config(
        source="file:///m", task="feature-extraction", evaluation_source="file:///nowhere.jsonl"
    )
    with pytest.raises(ConfigError, match="feature-extraction outputs have no labels"):
        labeled.load(config, tokenizer, None, NAMES, tmp_path)
