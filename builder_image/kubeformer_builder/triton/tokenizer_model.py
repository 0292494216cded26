"""Triton python-backend tokenizer, copied verbatim as NAME_tokenizer/1/model.py.

It runs inside Triton's Python stub, where only numpy, `tokenizers` and Triton's own
`triton_python_backend_utils` can be relied on: it imports nothing from kubeformer.

Each request is padded to the smallest sequence bucket that fits its longest text, so requests of
similar length reach NAME_model with equal shapes and the dynamic batcher can merge them. A bad
request (empty or non-UTF-8 text, too long under truncation=refuse) gets its own error; the other
requests of the batch are answered normally.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

QUESTION_ANSWERING = "question-answering"
TASKS_WITH_OFFSETS = ("token-classification", QUESTION_ANSWERING)
ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
PAD_TOKENS = ("[PAD]", "<pad>", "<|padding|>")


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


class Encoder:
    """Texts to bucket-padded numpy arrays; independent of Triton so it can be tested directly."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        task: str,
        input_names: list[str],
        buckets: list[int],
        truncate: bool,
        label: str,
    ):
        unknown = [name for name in input_names if name not in ENCODING_FIELDS]
        if unknown:
            raise ValueError(
                f"model inputs {unknown} cannot be produced by a tokenizer ({', '.join(ENCODING_FIELDS)})"
            )
        self.tokenizer = tokenizer
        self.task = task
        self.input_names = input_names
        self.buckets = buckets
        self.max_length = buckets[-1]
        self.pad_id = find_pad_id(tokenizer)
        tokenizer.no_padding()
        if truncate:
            strategy = "only_second" if task == QUESTION_ANSWERING else "longest_first"
            tokenizer.enable_truncation(self.max_length, strategy=strategy)
        else:
            tokenizer.no_truncation()
        self.label = label  # the request inputs, named in error messages

    def encode(self, texts: list) -> list:
        """Encodings of one request's texts (pairs for question answering)."""
        try:
            return self.tokenizer.encode_batch(texts)
        except Exception as error:  # the Rust tokenizer raises plain Exceptions
            raise RequestError(f"{self.label}: cannot tokenize: {error}") from error

    def bucket(self, encodings: list) -> int:
        """The smallest bucket that holds the request's longest encoding."""
        longest = max(len(encoding.ids) for encoding in encodings)
        if longest > self.max_length:
            raise RequestError(
                f"{self.label}: {longest} tokens is above the maximum sequence length "
                f"{self.max_length}; shorten the text or rebuild with truncation=truncate"
            )
        return next(b for b in self.buckets if b >= longest)

    def arrays(self, encodings: list, length: int) -> dict[str, np.ndarray]:
        """Model inputs (and OFFSETS where the task needs spans), padded to `length`."""
        count = len(encodings)
        arrays = {name: np.zeros((count, length), dtype=np.int64) for name in self.input_names}
        arrays["input_ids"].fill(self.pad_id)
        with_offsets = self.task in TASKS_WITH_OFFSETS
        if with_offsets:
            arrays["OFFSETS"] = np.full((count, length, 2), -1, dtype=np.int32)
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            for name in self.input_names:
                arrays[name][row, :size] = getattr(encoding, ENCODING_FIELDS[name])
            if with_offsets:
                offsets = np.asarray(encoding.offsets, dtype=np.int32).reshape(size, 2)
                if self.task == QUESTION_ANSWERING:
                    keep = np.array([sid == 1 for sid in encoding.sequence_ids], dtype=bool)
                else:
                    keep = np.asarray(encoding.special_tokens_mask, dtype=np.int32) == 0
                arrays["OFFSETS"][row, :size][keep] = offsets[keep]
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


def parameters(config: dict) -> dict[str, str]:
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


class TritonPythonModel:
    """Triton's entry points: initialize once per instance, execute per batch of requests."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        values = parameters(config)
        tokenizer = Tokenizer.from_file(str(Path(__file__).parent / "tokenizer" / "tokenizer.json"))
        self.input_names = tuple(item["name"] for item in config["input"])
        self.encoder = Encoder(
            tokenizer,
            task=values["task"],
            input_names=values["model_input_names"].split(","),
            buckets=[int(b) for b in values["sequence_buckets"].split(",")],
            truncate=values["truncation"] == "truncate",
            label="/".join(self.input_names),
        )

    def _texts(self, request) -> list:
        columns = [
            decode_texts(pb_utils.get_input_tensor_by_name(request, name).as_numpy(), name)
            for name in self.input_names
        ]
        if len({len(column) for column in columns}) != 1:
            raise RequestError(f"{', '.join(self.input_names)}: need the same number of texts in each input")
        return list(zip(*columns, strict=True)) if len(columns) > 1 else columns[0]

    def _response(self, request):
        encodings = self.encoder.encode(self._texts(request))
        length = self.encoder.bucket(encodings)
        arrays = self.encoder.arrays(encodings, length)
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
