"""Triton python-backend tokenizer, copied verbatim as NAME_tokenizer/1/model.py.

It runs inside Triton's Python stub, where only numpy, `tokenizers` and Triton's own
`triton_python_backend_utils` can be relied on: it imports nothing from kubeformer.

Each request is padded to the smallest sequence bucket that fits its longest text, so requests of
similar length reach NAME_model with equal shapes and the dynamic batcher can merge them. A bad
request (empty or non-UTF-8 text, too long under truncation=refuse, too many QA windows) gets
its own error; the other requests of the batch are answered normally.

Text pairs (TEXT + TEXT_PAIR, and QUESTION + CONTEXT) are encoded as the transformers tokenizer
encodes them: segment ids from the tokenizer's template, truncation `longest_first` (`only_second`
for question answering). Question answering splits a long context into overlapping windows
(`doc_stride` tokens shared by neighbours, the question repeated in each), one output row per
window, and says in SAMPLE_INDEX which question each row answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

QUESTION_ANSWERING = "question-answering"
TASKS_WITH_OFFSETS = ("token-classification", QUESTION_ANSWERING)
ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
PAD_TOKENS = ("[PAD]", "<pad>", "<|padding|>")
OUTSIDE = -1  # OFFSETS of a token that cannot be part of an answer or entity
CLS = -2  # OFFSETS of a QA window's CLS token: scored with the context, never an answer
OPTIONAL_INPUTS = ("TEXT_PAIR",)


class RequestError(Exception):
    """A request this model refuses; it becomes that request's TritonError."""


def find_pad_id(tokenizer: Tokenizer) -> int:
    """The pad id from tokenizer.json's padding section, else a conventional pad token, else 0.

    Padded positions carry attention_mask 0, so the value only has to be a valid id.
    """
    if tokenizer.padding:
        return int(tokenizer.padding["pad_id"])
    for token in PAD_TOKENS:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0


def find_cls_id(tokenizer: Tokenizer, tokenizer_dir: Path) -> int | None:
    """The id of tokenizer_config.json's `cls_token` (a string or an AddedToken dict), if any."""
    path = tokenizer_dir / "tokenizer_config.json"
    if not path.is_file():
        return None
    token = json.loads(path.read_text(encoding="utf-8")).get("cls_token")
    if isinstance(token, dict):
        token = token.get("content")
    return tokenizer.token_to_id(token) if isinstance(token, str) else None


class Rows(NamedTuple):  # not a dataclass: Triton's stub may load this file outside sys.modules
    """A request's encodings, one per model row, and the index of the text each row came from."""

    encodings: list
    samples: list[int]


class Encoder:
    """Texts to bucket-padded numpy arrays; independent of Triton so it can be tested directly.

    `stride`: tokens shared by neighbouring question-answering windows (0 elsewhere).
    `max_rows`: most rows one request may produce (the engine's max_batch_size).
    `cls_id`: the CLS token id, kept in the QA score normalization as transformers' pipeline does.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        task: str,
        input_names: list[str],
        buckets: list[int],
        truncate: bool,
        stride: int = 0,
        max_rows: int | None = None,
        cls_id: int | None = None,
    ):
        unknown = [name for name in input_names if name not in ENCODING_FIELDS]
        if unknown:
            raise ValueError(
                f"model inputs {unknown} cannot be produced by a tokenizer ({', '.join(ENCODING_FIELDS)})"
            )
        if not 0 <= stride < buckets[-1]:
            raise ValueError(f"doc_stride: must be in 0..{buckets[-1] - 1}, got {stride}")
        self.tokenizer = tokenizer
        self.task = task
        self.input_names = input_names
        self.buckets = buckets
        self.max_length = buckets[-1]
        self.pad_id = find_pad_id(tokenizer)
        self.cls_id = cls_id
        self.max_rows = max_rows
        self.windows = truncate and task == QUESTION_ANSWERING
        self.stride = stride if self.windows else 0
        tokenizer.no_padding()
        # Questions are measured without truncation or special tokens (see _check_questions).
        self.plain = Tokenizer.from_str(tokenizer.to_str())
        self.plain.no_truncation()
        if truncate:
            strategy = "only_second" if task == QUESTION_ANSWERING else "longest_first"
            tokenizer.enable_truncation(self.max_length, stride=self.stride, strategy=strategy)
        else:
            tokenizer.no_truncation()

    def _check_questions(self, pairs: list, label: str) -> None:
        """Refuse questions that leave no more than `stride` context tokens per window.

        The Rust tokenizer panics (instead of raising) on such a window, so it is checked first.
        """
        first = label.split("/")[0]
        room = self.max_length - self.tokenizer.num_special_tokens_to_add(True)
        questions = self.plain.encode_batch([q for q, _ in pairs], add_special_tokens=False)
        for index, question in enumerate(questions):
            left = room - len(question.ids)
            if left <= self.stride:
                raise RequestError(
                    f"{first}[{index}]: {len(question.ids)} tokens leave {max(left, 0)} context tokens per "
                    f"window of {self.max_length}, need more than the stride {self.stride}; shorten the "
                    "question or serve with a smaller doc_stride"
                )

    def encode(self, texts: list, label: str) -> Rows:
        """Encodings of one request's texts: strings, or (first, second) pairs.

        `label` names the request inputs in errors ("TEXT", "TEXT/TEXT_PAIR", "QUESTION/CONTEXT").
        """
        if self.windows:
            self._check_questions(texts, label)
        try:
            encodings = self.tokenizer.encode_batch(texts)
        except Exception as error:  # the Rust tokenizer raises plain Exceptions
            raise RequestError(f"{label}: cannot tokenize: {error}") from error
        if not self.windows:
            return Rows(encodings, list(range(len(encodings))))
        rows, samples = [], []
        for index, encoding in enumerate(encodings):
            windows = [encoding, *encoding.overflowing]  # what transformers' return_overflowing_tokens gives
            rows += windows
            samples += [index] * len(windows)
        if self.max_rows is not None and len(rows) > self.max_rows:
            raise RequestError(
                f"{label}: {len(texts)} question(s) need {len(rows)} context windows (stride {self.stride}), "
                f"above the model's max batch size {self.max_rows}; send fewer questions per request "
                "or a shorter context"
            )
        return Rows(rows, samples)

    def bucket(self, rows: Rows, label: str) -> int:
        """The smallest bucket that holds the request's longest encoding."""
        longest = max(len(encoding.ids) for encoding in rows.encodings)
        if longest > self.max_length:
            raise RequestError(
                f"{label}: {longest} tokens is above the maximum sequence length "
                f"{self.max_length}; shorten the text or rebuild with truncation=truncate"
            )
        return next(b for b in self.buckets if b >= longest)

    def _answer_offsets(self, encoding) -> np.ndarray:
        """Character spans of the words of context tokens (answers align to words, as transformers'
        QA pipeline does), CLS for the CLS token, OUTSIDE for the rest."""
        spans = np.full((len(encoding.ids), 2), OUTSIDE, dtype=np.int32)
        words: dict[int, tuple[int, int] | None] = {}
        for token, (sequence, word) in enumerate(zip(encoding.sequence_ids, encoding.word_ids, strict=True)):
            if sequence == 1:
                if word is not None and word not in words:
                    words[word] = encoding.word_to_chars(word, 1)
                spans[token] = (words.get(word) if word is not None else None) or encoding.offsets[token]
            elif encoding.ids[token] == self.cls_id:
                spans[token] = CLS
        return spans

    def _token_offsets(self, encoding) -> np.ndarray:
        spans = np.asarray(encoding.offsets, dtype=np.int32).reshape(len(encoding.ids), 2)
        special = np.asarray(encoding.special_tokens_mask, dtype=bool)
        spans[special] = OUTSIDE
        return spans

    def arrays(self, rows: Rows, length: int) -> dict[str, np.ndarray]:
        """Model inputs (and OFFSETS / SAMPLE_INDEX where the task needs them), padded to `length`."""
        count = len(rows.encodings)
        arrays = {name: np.zeros((count, length), dtype=np.int64) for name in self.input_names}
        arrays["input_ids"].fill(self.pad_id)
        with_offsets = self.task in TASKS_WITH_OFFSETS
        if with_offsets:
            arrays["OFFSETS"] = np.full((count, length, 2), OUTSIDE, dtype=np.int32)
        for row, encoding in enumerate(rows.encodings):
            size = len(encoding.ids)
            for name in self.input_names:
                arrays[name][row, :size] = getattr(encoding, ENCODING_FIELDS[name])
            if with_offsets:
                qa = self.task == QUESTION_ANSWERING
                spans = self._answer_offsets(encoding) if qa else self._token_offsets(encoding)
                arrays["OFFSETS"][row, :size] = spans
        if self.task == QUESTION_ANSWERING:
            arrays["SAMPLE_INDEX"] = np.asarray(rows.samples, dtype=np.int32).reshape(count, 1)
        return arrays


def decode_texts(values: np.ndarray, name: str) -> list[str]:
    """A TYPE_STRING input as Python strings, refusing empty or non-UTF-8 ones by name and index."""
    texts = []
    for index, value in enumerate(values.reshape(-1)):
        try:
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as error:
            raise RequestError(f"{name}[{index}]: not valid UTF-8 ({error.reason})") from error
        if not text.strip():
            raise RequestError(f"{name}[{index}]: empty text; send at least one non-blank character")
        texts.append(text)
    return texts


def request_texts(columns: dict[str, list[str]]) -> tuple[list, str]:
    """One request's texts (strings, or pairs from two inputs) and the label naming its inputs.

    `columns` holds the inputs the request carries, in the model's input order; Triton has already
    refused inputs whose batch sizes differ ("input 'TEXT' batch size does not match other inputs").
    """
    names = list(columns)
    if len(names) == 1:
        return columns[names[0]], names[0]
    return list(zip(*columns.values(), strict=True)), "/".join(names)


def parameters(config: dict) -> dict[str, str]:
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


class TritonPythonModel:
    """Triton's entry points: initialize once per instance, execute per batch of requests."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        values = parameters(config)
        tokenizer_dir = Path(__file__).parent / "tokenizer"
        tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self.input_names = tuple(item["name"] for item in config["input"])
        self.encoder = Encoder(
            tokenizer,
            task=values["task"],
            input_names=values["model_input_names"].split(","),
            buckets=[int(b) for b in values["sequence_buckets"].split(",")],
            truncate=values["truncation"] == "truncate",
            stride=int(values.get("doc_stride", "0")),
            max_rows=int(config["max_batch_size"]),
            cls_id=find_cls_id(tokenizer, tokenizer_dir),
        )

    def _texts(self, request) -> tuple[list, str]:
        columns = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None and name in OPTIONAL_INPUTS:
                continue
            columns[name] = decode_texts(tensor.as_numpy(), name)
        return request_texts(columns)

    def _response(self, request):
        texts, label = self._texts(request)
        rows = self.encoder.encode(texts, label)
        arrays = self.encoder.arrays(rows, self.encoder.bucket(rows, label))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in arrays.items()])

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._response(request))
            except RequestError as error:
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error)))
                )
        return responses
