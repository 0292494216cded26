"""The user's labeled held-out data (`optimization.evaluation`): read it, check it against the
model's labels, tokenize it, and score model outputs on it.

Rows come from JSON Lines, JSON (a list of objects), CSV or Parquet files, resolved from file://,
s3:// or hf:// (a dataset repository; every data file in it is read), or from an inline JSON list.
Columns are named by textColumn, textPairColumn and labelColumn. Label formats per task:

- text-classification: text [+ text pair]; label = a label name of the model's id2label or an id.
- token-classification: text = a string (words split on whitespace) or a list of words; label =
  one tag per word (names or ids; IOB2, IOB1, IOE or IOBES, scored entity by entity as conlleval
  and seqeval do), or a list of spans {"start", "end", "label"} (character offsets into the text,
  end exclusive, on word boundaries; label = the entity type, e.g. PER).
- question-answering: text = the question, text pair = the context; label = the answers, as
  SQuAD's {"text": [...], "answer_start": [...]}, one string or a list of strings.
A list-valued label in a CSV cell is written as JSON.

Everything is checked before any export work: an unreadable source or a row without its columns
is a SourceError, and so is a label the model does not know, each naming the field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubeformer_builder import gate, inference
from kubeformer_builder.config import BuildConfig, Evaluation, GateMetric, Task
from kubeformer_builder.errors import ConfigError, SourceError
from kubeformer_builder.sources import resolve_source

FIELD = "optimization.evaluation"
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
BATCH = 8
MAX_ANSWER_TOKENS = 30  # the longest span a QA prediction may take, as transformers' pipeline


def read_rows(path: Path) -> list[dict]:
    """The rows of one data file, by its suffix. SourceError naming the field when unreadable."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet

            return pyarrow.parquet.read_table(path).to_pylist()
        content = path.read_text(encoding="utf-8")
        if path.suffix == ".csv":
            return list(csv.DictReader(content.splitlines()))
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in content.splitlines() if line.strip()]
        if path.suffix == ".json":
            rows = json.loads(content)
            if isinstance(rows, list):
                return rows
            raise SourceError(f"{FIELD}.source: {path} must hold a JSON list of rows")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and ArrowInvalid too
        raise SourceError(f"{FIELD}.source: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    raise SourceError(f"{FIELD}.source: {path.name} is not one of {', '.join(DATA_SUFFIXES)}")


def load_rows(evaluation: Evaluation, workdir: Path, endpoint: str | None) -> list[dict]:
    """Every row of the source, in order, at most `samples` of them."""
    source = evaluation.source or ""
    if source.lstrip().startswith("["):
        try:
            rows = json.loads(source)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{FIELD}.source: inline list is not valid JSON: {exc}") from exc
    else:
        local = resolve_source(source, "main", workdir / "evaluation", endpoint, f"{FIELD}.source", "dataset")
        files = (
            [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.suffix in DATA_SUFFIXES)
        )
        rows = [row for path in files for row in read_rows(path)]
    if not rows:
        raise SourceError(f"{FIELD}.source: {source[:200]} holds no rows")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SourceError(f"{FIELD}.source: row {index} is {type(row).__name__}, expected an object")
    return rows[: evaluation.samples]


def column(rows: list[dict], name: str, key: str) -> list[Any]:
    """One column's values; SourceError naming `key` (e.g. textColumn) for a row that lacks it."""
    for index, row in enumerate(rows):
        if row.get(name) is None:
            raise SourceError(
                f"{FIELD}.{key}: row {index} has no value in column {name!r} "
                f"(its columns: {', '.join(map(str, row))})"
            )
    return [row[name] for row in rows]


def _texts(values: list[Any], key: str) -> list[str]:
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise SourceError(f"{FIELD}.{key}: row {index} holds {type(value).__name__}, expected text")
    return values


def _decoded(value: Any) -> Any:
    """A CSV cell holding a JSON list or object, decoded; anything else as it is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


class LabelIds:
    """Label names and ids of the model's id2label; collects the labels it does not know."""

    def __init__(self, id2label: dict[int, str]):
        self.id2label = id2label
        self.by_name = {name: index for index, name in id2label.items()}
        self.unknown: list[Any] = []

    def id_of(self, label: Any) -> int:
        if isinstance(label, str) and label in self.by_name:
            return self.by_name[label]
        number = label if isinstance(label, int) and not isinstance(label, bool) else None
        if isinstance(label, str) and label.strip().lstrip("-").isdigit():
            number = int(label)
        if number is not None and number in self.id2label:
            return number
        self.unknown.append(label)
        return -1

    def check(self) -> None:
        if self.unknown:
            shown = ", ".join(sorted({repr(label) for label in self.unknown})[:10])
            known = ", ".join(f"{i}={name}" for i, name in sorted(self.id2label.items())[:20])
            raise SourceError(
                f"{FIELD}.labelColumn: labels the model does not know: {shown} (its id2label: {known})"
            )


@dataclass
class LabeledSet:
    """Tokenized labeled examples in batches, and what scoring outputs on them needs.

    labels: classification: gold ids (texts,); token classification: gold entity sets (one per text);
    question answering: gold answer lists. extra: per-text token data used to decode predictions
    (token classification: word index per token; question answering: context character offsets).
    """

    task: Task
    batches: list[inference.Batch]
    labels: list[Any]
    extra: list[Any]
    contexts: list[str]
    id2label: dict[int, str] | None

    def __len__(self) -> int:
        return len(self.labels)

    def score(self, metric: GateMetric, outputs: Sequence[gate.Outputs]) -> float:
        """The labeled score (a fraction) of outputs on the first len(outputs) batches."""
        count = sum(len(batch["input_ids"]) for batch in self.batches[: len(outputs)])
        if self.task is Task.TEXT_CLASSIFICATION:
            return gate.accuracy(np.asarray(self.labels[:count]), np.concatenate([o[0] for o in outputs]))
        if self.task is Task.TOKEN_CLASSIFICATION:
            predicted = [self._entities(logits, words) for logits, words in self._rows(outputs, 0)]
            return gate.entity_f1(self.labels[:count], predicted)
        scorer = gate.answer_exact_match if metric is GateMetric.EXACT_MATCH else gate.answer_f1
        starts, ends = self._rows(outputs, 0), self._rows(outputs, 1)
        answers = [
            scorer(best_answer(start, end, offsets, self.contexts[row]), self.labels[row])
            for row, ((start, offsets), (end, _)) in enumerate(zip(starts, ends, strict=True))
        ]
        return float(np.mean(answers)) if answers else 0.0

    def _rows(self, outputs: Sequence[gate.Outputs], index: int) -> list[tuple[np.ndarray, Any]]:
        """(output row, extra) per text of the scored batches."""
        rows = [row for out in outputs for row in out[index]]
        return list(zip(rows, self.extra[: len(rows)], strict=True))

    def _entities(self, logits: np.ndarray, words: list[int | None]) -> set[gate.Entity]:
        """Entities over words: each word takes the label of its first token, as transformers'
        token-classification pipeline (aggregation "first") does; truncated words are O."""
        tags = {}
        for position, word in enumerate(words):
            if word is not None and word not in tags:
                tags[word] = self.id2label[int(logits[position].argmax())]
        last = max(tags, default=-1)
        return set(gate.tag_entities([tags.get(word, "O") for word in range(last + 1)]))


def best_answer(start: np.ndarray, end: np.ndarray, offsets: list, context: str) -> str:
    """The context span with the highest start + end logit, start <= end < start + 30 tokens,
    both inside the context. offsets: per token (char start, char end) in the context, None outside."""
    inside = np.array([o is not None for o in offsets] + [False] * (len(start) - len(offsets)))
    scores = np.where(inside, start[: len(inside)], -np.inf)[:, None] + np.where(
        inside, end[: len(inside)], -np.inf
    )
    length = np.arange(len(inside))
    allowed = (length[None, :] >= length[:, None]) & (length[None, :] < length[:, None] + MAX_ANSWER_TOKENS)
    scores = np.where(allowed, scores, -np.inf)
    if not np.isfinite(scores).any():
        return ""
    first, last = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return context[offsets[first][0] : offsets[last][1]]


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character (start, end) of each whitespace-separated word."""
    spans, position = [], 0
    for word in text.split():
        start = text.index(word, position)
        spans.append((start, start + len(word)))
        position = start + len(word)
    return spans


def gold_entities(text: str, words: list[str], label: Any, ids: LabelIds, row: int) -> set[gate.Entity]:
    """Word-level entities from one row's tags (one per word) or character spans."""
    label = _decoded(label)
    if not isinstance(label, list):
        raise SourceError(
            f"{FIELD}.labelColumn: row {row} holds {type(label).__name__}, expected tags or spans"
        )
    if all(isinstance(item, dict) for item in label) and label:
        spans = word_spans(text)
        entities = set()
        for item in label:
            try:
                start, end, kind = int(item["start"]), int(item["end"]), str(item["label"])
            except (KeyError, TypeError, ValueError) as exc:
                raise SourceError(
                    f"{FIELD}.labelColumn: row {row} span {item!r} needs start, end and label"
                ) from exc
            covered = [i for i, (a, b) in enumerate(spans) if a < end and b > start]
            if not covered:
                raise SourceError(f"{FIELD}.labelColumn: row {row} span {start}:{end} covers no word")
            entities.add((kind, covered[0], covered[-1]))
        types = {name.partition("-")[2] or name for name in ids.id2label.values()}
        ids.unknown += [kind for kind, _, _ in entities if kind not in types]
        return entities
    if len(label) != len(words):
        raise SourceError(
            f"{FIELD}.labelColumn: row {row} has {len(label)} tags for {len(words)} words (one tag per word)"
        )
    tags = [ids.id2label.get(ids.id_of(tag), "O") for tag in label]
    return set(gate.tag_entities(tags))


def answers_of(label: Any, row: int) -> list[str]:
    label = _decoded(label)
    if isinstance(label, dict):
        label = label.get("text")
    if isinstance(label, str):
        label = [label]
    if not isinstance(label, list) or not label or not all(isinstance(a, str) for a in label):
        raise SourceError(
            f"{FIELD}.labelColumn: row {row} must hold answers: a string, a list of strings or "
            '{"text": [...], "answer_start": [...]}'
        )
    return list(label)


def prepare(
    task: Task, rows: list[dict], evaluation: Evaluation, tokenizer, id2label, input_names, max_length: int
) -> LabeledSet:
    """Check rows against the model's labels and tokenize them in batches of 8 (in row order)."""
    if task is Task.QUESTION_ANSWERING and not evaluation.text_pair_column:
        raise ConfigError(f"{FIELD}.textPairColumn: question-answering needs the column holding the contexts")
    names = {"textColumn": evaluation.text_column, "labelColumn": evaluation.label_column}
    raw_labels = column(rows, names["labelColumn"], "labelColumn")
    texts = column(rows, names["textColumn"], "textColumn")
    pairs = None
    if evaluation.text_pair_column:
        pairs = _texts(column(rows, evaluation.text_pair_column, "textPairColumn"), "textPairColumn")
    if task is Task.TEXT_CLASSIFICATION:
        ids = LabelIds(id2label)
        labels = [ids.id_of(label) for label in raw_labels]
        ids.check()
        texts = _texts(texts, "textColumn")
        examples = texts if pairs is None else list(zip(texts, pairs, strict=True))  # calibration.Text
        batches = [
            inference.tokenize(tokenizer, task, examples[i : i + BATCH], input_names, max_length)
            for i in range(0, len(examples), BATCH)
        ]
        return LabeledSet(task, batches, labels, [], [], id2label)
    if task is Task.TOKEN_CLASSIFICATION:
        return _token_set(texts, raw_labels, tokenizer, id2label, input_names, max_length)
    if task is Task.QUESTION_ANSWERING:
        return _answer_set(_texts(texts, "textColumn"), pairs, raw_labels, tokenizer, input_names, max_length)
    raise ConfigError(f"{FIELD}: {task.value} has no labels to score")


def _encode(tokenizer, first, second, input_names, max_length, **options):
    encoded = tokenizer(
        first, second, max_length=max_length, padding="longest", return_tensors="np", **options
    )
    return encoded, {name: encoded[name].astype(np.int64) for name in input_names}


def _token_set(texts, raw_labels, tokenizer, id2label, input_names, max_length) -> LabeledSet:
    ids = LabelIds(id2label)
    words_of = [text.split() if isinstance(text, str) else _decoded(text) for text in texts]
    labels = []
    for row, (text, words) in enumerate(zip(texts, words_of, strict=True)):
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise SourceError(f"{FIELD}.textColumn: row {row} must hold a text or a list of words")
        labels.append(
            gold_entities(
                text if isinstance(text, str) else " ".join(words), words, raw_labels[row], ids, row
            )
        )
    ids.check()
    batches, word_ids = [], []
    for start in range(0, len(words_of), BATCH):
        encoded, batch = _encode(
            tokenizer, words_of[start : start + BATCH], None, input_names, max_length,
            is_split_into_words=True, truncation=True,
        )  # fmt: skip
        batches.append(batch)
        word_ids += [encoded.word_ids(i) for i in range(len(batch["input_ids"]))]
    return LabeledSet(Task.TOKEN_CLASSIFICATION, batches, labels, word_ids, [], id2label)


def _answer_set(questions, contexts, raw_labels, tokenizer, input_names, max_length) -> LabeledSet:
    answers = [answers_of(label, row) for row, label in enumerate(raw_labels)]
    batches, offsets = [], []
    for start in range(0, len(questions), BATCH):
        encoded, batch = _encode(
            tokenizer, questions[start : start + BATCH], contexts[start : start + BATCH], input_names,
            max_length, truncation="only_second", return_offsets_mapping=True,
        )  # fmt: skip
        batches.append(batch)
        for i in range(len(batch["input_ids"])):
            sequence = encoded.sequence_ids(i)
            pairs = encoded["offset_mapping"][i]
            offsets.append([tuple(pairs[t]) if sequence[t] == 1 else None for t in range(len(sequence))])
    return LabeledSet(Task.QUESTION_ANSWERING, batches, answers, offsets, list(contexts), None)


def load(config: BuildConfig, tokenizer, id2label, input_names, workdir: Path) -> LabeledSet | None:
    """The build's labeled set, or None when it has no evaluation data. Checks the gate metric
    fits the task first, so that nothing is read or exported for a spec that cannot work."""
    if config.evaluation.source is None:
        return None
    gate.resolve_metric(config.task, config.gate.metric, labeled=True)
    rows = load_rows(config.evaluation, workdir, config.storage.endpoint)
    return prepare(
        config.task, rows, config.evaluation, tokenizer, id2label, input_names, config.shapes.sequence.max
    )
