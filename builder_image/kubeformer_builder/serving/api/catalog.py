"""What the front knows about each served ensemble: task, labels, limits and its own tokenizer.

Triton's configs say what each ensemble is (kubeformer_builder.serving.client.parse_ensemble); the
model repository on disk holds the tokenizer the ensemble uses, so the front counts tokens exactly as
the model does (usage.prompt_tokens, `truncate: false`) without a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding, Tokenizer

from kubeformer_builder.config import Task
from kubeformer_builder.errors import ServeError
from kubeformer_builder.serving.api.errors import ApiError, too_large
from kubeformer_builder.serving.client import EnsembleInfo

TOKENIZER_FILE = "1/tokenizer/tokenizer.json"


class Lengths:
    """The model's tokenizer without truncation or padding: token counts, special tokens included."""

    def __init__(self, path: Path, max_length: int):
        self.full = Tokenizer.from_file(str(path))
        self.full.no_truncation()
        self.full.no_padding()
        self.max_length = max_length

    def encode(self, rows: list[tuple[str, ...]]) -> list[Encoding]:
        return self.full.encode_batch([row if len(row) == 2 else row[0] for row in rows])

    def cut(self, text: str) -> str:
        """`text` cut after the last token that fits: what truncation would keep, as text."""
        truncating = Tokenizer.from_str(self.full.to_str())
        truncating.enable_truncation(self.max_length)
        encoding = truncating.encode(text)
        marks = zip(encoding.offsets, encoding.special_tokens_mask, strict=True)
        kept = [end for (_, end), special in marks if not special]
        return text[: max(kept)] if kept else text


@dataclass(frozen=True)
class ServedModel:
    info: EnsembleInfo
    truncates: bool  # the tokenizer cuts over-long texts itself (build truncation=truncate)
    dimensions: int | None  # feature-extraction: embedding size
    lengths: Lengths

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def task(self) -> Task:
        return self.info.task

    def fit(
        self, rows: list[tuple[str, ...]], truncate: bool, field: str
    ) -> tuple[list[tuple[str, ...]], int]:
        """Rows that fit the model and the tokens they count (truncated where asked).

        Raises ApiError 413 naming `field[i]` when a row is over the maximum sequence length and
        `truncate` is false, or when it is a pair that a model built to refuse long texts cannot cut.
        Question answering splits long contexts into windows itself: its rows pass as they are.
        """
        if self.task is Task.QUESTION_ANSWERING:
            return rows, sum(len(e.ids) for e in self.lengths.encode(rows))
        limit, fitted, tokens = self.lengths.max_length, [], 0
        for index, (row, encoding) in enumerate(zip(rows, self.lengths.encode(rows), strict=True)):
            count = len(encoding.ids)
            if count > limit:
                if not truncate:
                    raise too_large(
                        f"{field}[{index}]",
                        f"{count} tokens is above the model's maximum of {limit}; shorten it or send "
                        "truncate: true",
                    )
                if not self.truncates:
                    if len(row) != 1:
                        raise too_large(f"{field}[{index}]", f"{count} tokens is above the maximum {limit}")
                    row = (self.lengths.cut(row[0]),)
                count = limit
            fitted.append(row)
            tokens += count
        return fitted, tokens


def tokenizer_path(repositories: tuple[Path, ...], name: str) -> Path:
    for repository in repositories:
        path = repository / f"{name}_tokenizer" / TOKENIZER_FILE
        if path.is_file():
            return path
    raise ServeError(
        f"model {name!r}: no {name}_tokenizer/{TOKENIZER_FILE} in {[str(r) for r in repositories]}"
    )


def parse_served(config: dict, tokenizer_config: dict, engine_config: dict, path: Path) -> ServedModel:
    """A ServedModel from the ensemble's, tokenizer's and engine's configs (Triton's JSON form)."""
    from kubeformer_builder.serving.client import parse_ensemble

    info = parse_ensemble(config)
    truncation = tokenizer_config.get("parameters", {}).get("truncation", {}).get("string_value")
    dims = {o["name"]: [int(d) for d in o.get("dims", [])] for o in engine_config.get("output", [])}
    return ServedModel(
        info=info,
        truncates=truncation == "truncate",
        dimensions=(dims.get("EMBEDDING") or [None])[-1],
        lengths=Lengths(path, info.max_sequence_length or 512),
    )


def find(
    models: dict[str, ServedModel], name: str | None, tasks: tuple[Task, ...], route: str
) -> ServedModel:
    """The model a request names (404 if unknown), or the only model of the route's tasks."""
    if name is not None:
        model = models.get(name)
        if model is None:
            raise ApiError(
                404, f"model: {name!r} is not served; served: {sorted(models)}", "model", "model_not_found"
            )
        if model.task not in tasks:
            wanted = " or ".join(t.value for t in tasks)
            raise ApiError(
                422, f"model: {name!r} is a {model.task.value} model; {route} needs {wanted}", "model"
            )
        return model
    fitting = [m for m in models.values() if m.task in tasks]
    if len(fitting) != 1:
        names = sorted(m.name for m in fitting)
        raise ApiError(
            422, f"model: required when the server has {len(fitting)} models for {route} ({names})", "model"
        )
    return fitting[0]
