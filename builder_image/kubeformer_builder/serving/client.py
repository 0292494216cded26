"""`kubeformer predict`: call a served ensemble over HTTP or gRPC and return readable answers.

The ensemble's own config says what it is (`task`, `id2label` parameters), so the client needs only
the URL: it finds the ensemble, reads its parameters and picks the post-processing from the task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from tritonclient.utils import InferenceServerException

from kubeformer_builder.config import Task
from kubeformer_builder.errors import ConfigError, ServeError
from kubeformer_builder.serving import answers


@dataclass(frozen=True)
class Target:
    protocol: str  # "http" | "grpc"
    address: str  # host:port


def parse_url(url: str) -> Target:
    """http://host:port, grpc://host:port, or a bare host:port (HTTP)."""
    scheme, _, address = url.rpartition("://")
    scheme = scheme or "http"
    if scheme not in ("http", "grpc") or not address:
        raise ConfigError(f"URL {url!r}: expected http://HOST:PORT or grpc://HOST:PORT")
    return Target(scheme, address.rstrip("/"))


PAIR_INPUT = "TEXT_PAIR"


@dataclass(frozen=True)
class EnsembleInfo:
    name: str
    task: Task
    id2label: dict[int, str]
    function_to_apply: str  # text-classification scores: answers.SIGMOID | SOFTMAX | NONE
    inputs: tuple[str, ...]  # the ensemble's input names (TEXT_PAIR: takes pairs)
    max_batch_size: int  # most texts (or pairs) one request may carry
    max_sequence_length: int | None = None  # tokens, special ones included
    normalized: bool = False  # feature-extraction: EMBEDDING has unit L2 norm

    @property
    def takes_pairs(self) -> bool:
        return PAIR_INPUT in self.inputs


def parse_ensemble(config: dict) -> EnsembleInfo:
    """Task, labels, score function, inputs and batch limit from an ensemble config in Triton's JSON form.

    Artifacts built before `function_to_apply` existed get transformers' default for their label count.
    """
    values = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
    if "task" not in values:
        raise ConfigError(f"model {config.get('name')!r} has no 'task' parameter: not a kubeformer ensemble")
    labels = {int(k): v for k, v in json.loads(values.get("id2label") or "{}").items()}
    length = values.get("max_sequence_length")
    return EnsembleInfo(
        config["name"],
        Task(values["task"]),
        labels,
        function_to_apply=values.get("function_to_apply") or answers.score_function(None, len(labels)),
        inputs=tuple(item["name"] for item in config.get("input", [])),
        max_batch_size=int(config.get("max_batch_size", 0)),
        max_sequence_length=int(length) if length else None,
        normalized=values.get("normalized") == "true",
    )


def request_columns(info: EnsembleInfo, texts: list[str], context: str | list[str] | None = None) -> dict:
    """The ensemble's input columns: TEXT, or QUESTION and CONTEXT (one context, or one per question)."""
    if info.task is not Task.QUESTION_ANSWERING:
        return {"TEXT": texts}
    if not context:
        raise ConfigError(f"{info.name} answers questions: give the passage with --context")
    contexts = [context] * len(texts) if isinstance(context, str) else context
    return {"QUESTION": texts, "CONTEXT": contexts}


def readable_answers(info: EnsembleInfo, columns: dict[str, list[str]], out: dict[str, np.ndarray]) -> list:
    """One readable answer per row of `columns` from the ensemble outputs `out` of that request."""
    task, labels = info.task, info.id2label
    if task is Task.QUESTION_ANSWERING:
        # One output row per context window; SAMPLE_INDEX says which question each row answers.
        rows = out["SAMPLE_INDEX"].reshape(-1)
        spans = ("START_LOGITS", "END_LOGITS", "OFFSETS")
        return [
            {"question": q, **answers.best_answer(c, *(out[name][rows == i] for name in spans))}
            for i, (q, c) in enumerate(zip(columns["QUESTION"], columns["CONTEXT"], strict=True))
        ]
    texts = columns["TEXT"]
    if task is Task.FEATURE_EXTRACTION:
        return [{"text": t, "embedding": e.tolist()} for t, e in zip(texts, out["EMBEDDING"], strict=True)]
    if task is Task.TEXT_CLASSIFICATION:
        return [
            {"text": t, "labels": answers.classify(x, labels, info.function_to_apply)}
            for t, x in zip(texts, out["LOGITS"], strict=True)
        ]
    rows = zip(texts, out["LOGITS"], out["OFFSETS"], strict=True)
    return [{"text": t, "entities": answers.aggregate_entities(t, x, o, labels)} for t, x, o in rows]


class Predictor:
    """One connection to Triton; use as a context manager so the connection is closed."""

    def __init__(self, url: str, model: str | None = None):
        self.target = parse_url(url)
        self.grpc = self.target.protocol == "grpc"
        self.module = _client_module(self.target.protocol)
        self.client = self.module.InferenceServerClient(self.target.address)
        try:
            self.info = parse_ensemble(self._config(model or self._find_ensemble()))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    # The two clients differ only in how they return JSON; these three calls hide that.
    def _config(self, name: str) -> dict:
        try:
            if self.grpc:
                return self.client.get_model_config(name, as_json=True)["config"]
            return self.client.get_model_config(name)
        except InferenceServerException as error:
            raise ServeError(
                f"{self.target.address}: cannot read model {name!r}: {error.message()}"
            ) from error

    def _model_names(self) -> list[str]:
        if self.grpc:
            models = self.client.get_model_repository_index(as_json=True).get("models", [])
        else:
            models = self.client.get_model_repository_index()
        return [m["name"] for m in models if m.get("state") == "READY"]

    def _output_names(self, result) -> list[str]:
        response = result.get_response(as_json=True) if self.grpc else result.get_response()
        return [output["name"] for output in response["outputs"]]

    def _find_ensemble(self) -> str:
        ensembles = [n for n in self._model_names() if self._config(n).get("platform") == "ensemble"]
        if len(ensembles) != 1:
            raise ConfigError(f"{self.target.address}: serves ensembles {ensembles}; choose one with --model")
        return ensembles[0]

    def infer(self, columns: dict[str, list[str]]) -> dict[str, np.ndarray]:
        """Raw ensemble outputs for texts given per input name (TEXT, or QUESTION and CONTEXT)."""
        inputs = []
        for name, texts in columns.items():
            tensor = self.module.InferInput(name, [len(texts), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[t.encode("utf-8")] for t in texts], dtype=object))
            inputs.append(tensor)
        try:
            result = self.client.infer(self.info.name, inputs)
        except InferenceServerException as error:
            raise ServeError(f"{self.info.name}: {error.message()}") from error
        return {name: result.as_numpy(name) for name in self._output_names(result)}

    def predict(self, texts: list[str], context: str | None = None) -> list[dict]:
        """One readable answer per text; for question answering the texts are questions about `context`."""
        columns = request_columns(self.info, texts, context)
        return readable_answers(self.info, columns, self.infer(columns))

    def pair_logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """LOGITS float32 [len(pairs), N] of (text, text_pair) pairs, sent as ONE request of that batch.

        Raises ConfigError when the ensemble takes no TEXT_PAIR or the pairs exceed its max batch size,
        ServeError when Triton refuses the request (its message names the input).
        """
        if not self.info.takes_pairs:
            raise ConfigError(
                f"{self.info.name} ({self.info.task.value}) takes single texts only (inputs "
                f"{', '.join(self.info.inputs)}); pairs need a text-classification model"
            )
        if not pairs:
            raise ConfigError("pairs: need at least one (text, text_pair) pair")
        if len(pairs) > self.info.max_batch_size:
            raise ConfigError(
                f"pairs: {len(pairs)} pairs are more than {self.info.name}'s max batch size "
                f"{self.info.max_batch_size}; send them in smaller requests"
            )
        return self.infer({"TEXT": [a for a, _ in pairs], PAIR_INPUT: [b for _, b in pairs]})["LOGITS"]

    def predict_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[dict]:
        """One readable answer per (text, text_pair): {"text", "text_pair", "labels"} as predict gives."""
        logits = self.pair_logits(pairs)
        return [
            {
                "text": a,
                "text_pair": b,
                "labels": answers.classify(x, self.info.id2label, self.info.function_to_apply),
            }
            for (a, b), x in zip(pairs, logits, strict=True)
        ]


def _client_module(protocol: str) -> ModuleType:
    """tritonclient.http or tritonclient.grpc, imported only when a prediction is made."""
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module
