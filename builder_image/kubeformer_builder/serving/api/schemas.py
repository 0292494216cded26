"""Request bodies of every route, validated by pydantic; a failure becomes a 422 naming the field.

Types are strict (a number is not a text, a string is not a boolean). A single text is accepted
wherever a list of texts is, as OpenAI and text-embeddings-inference accept it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from kubeformer_builder.serving.api.errors import ApiError, invalid


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank_text", "blank text; send at least one non-blank character")
    return text


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(v) is int for v in value)


def _one_or_many(value: Any) -> Any:
    """A lone item becomes a list of one; token ids (OpenAI allows them) are refused with the fix."""
    if _token_ids(value) or (isinstance(value, list) and value and all(_token_ids(v) for v in value)):
        raise PydanticCustomError(
            "token_ids",
            "token arrays are not accepted, send the texts "
            "(LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))",
        )
    return value if isinstance(value, list) else [value]


Text = Annotated[StrictStr, AfterValidator(_not_blank)]
Texts = Annotated[list[Text], BeforeValidator(_one_or_many), Field(min_length=1)]
# A classification input: one text, or [text, text_pair].
Sequence = Annotated[tuple[Text, ...], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]
Sequences = Annotated[
    list[Annotated[Sequence, Field(min_length=1, max_length=2)]],
    BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
    Field(min_length=1),
]


class Strict(BaseModel):
    """Unknown fields are refused by name: a misspelt option must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingsRequest(BaseModel):
    """OpenAI's POST /v1/embeddings; unknown fields are ignored as OpenAI ignores them (`user`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    input: Texts
    model: StrictStr
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[StrictInt, Field(gt=0)] | None = None


class ModelRequest(Strict):
    """Fields of every text-embeddings-inference-style route: `model` may be left out when one fits."""

    truncate: StrictBool = True
    model: StrictStr | None = None


class EmbedRequest(ModelRequest):
    """text-embeddings-inference's POST /embed."""

    inputs: Texts
    normalize: StrictBool = True


class RerankRequest(ModelRequest):
    """text-embeddings-inference's POST /rerank (sigmoid scores, no raw_scores) plus infinity's top_n."""

    query: Text
    texts: Texts
    top_n: Annotated[StrictInt, Field(gt=0)] | None = None
    return_text: StrictBool = False


class Question(Strict):
    question: Text
    context: Text


class PredictRequest(ModelRequest):
    """POST /predict: `inputs` is checked against the model's task by `predict_inputs`."""

    inputs: Any


_SEQUENCES = TypeAdapter(Sequences)
_TEXTS = TypeAdapter(Texts)
_QUESTIONS = TypeAdapter(
    Annotated[
        list[Question], BeforeValidator(lambda v: [v] if isinstance(v, dict) else v), Field(min_length=1)
    ]
)


def field_path(location: tuple) -> str:
    """('input', 2) -> 'input[2]'; ('inputs', 0, 'question') -> 'inputs[0].question'."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def parse(model: type[BaseModel] | TypeAdapter, value: Any, prefix: tuple = ()) -> Any:
    """`value` validated into `model`, or the first problem as a 422 ApiError naming its field."""
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(value)
        return model.model_validate(value)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise invalid(field_path(prefix + tuple(first["loc"])), first["msg"]) from None


def predict_inputs(kind: Literal["sequences", "texts", "questions"], inputs: Any) -> list:
    """The /predict `inputs` for a task: tuples of one or two texts, texts, or Question objects."""
    if inputs is None:
        raise ApiError(422, "inputs: Field required", "inputs")
    adapter = {"sequences": _SEQUENCES, "texts": _TEXTS, "questions": _QUESTIONS}[kind]
    return parse(adapter, inputs, ("inputs",))
