"""Request validation of the API front: each bad body becomes a 422 naming its field."""

from __future__ import annotations

import pytest

from kubeformer_builder.serving.api import schemas
from kubeformer_builder.serving.api.errors import ApiError


def refused(model, body) -> ApiError:
    with pytest.raises(ApiError) as caught:
        schemas.parse(model, body)
    assert caught.value.status == 422
    return caught.value


def test_a_single_text_is_a_list_of_one():
    assert schemas.parse(schemas.EmbeddingsRequest, {"model": "m", "input": "hi"}).input == ["hi"]
    assert schemas.parse(schemas.EmbedRequest, {"inputs": ["a", "b"]}).inputs == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"model": "m", "input": []}, "input", "at least 1 item"),
        ({"model": "m", "input": ["ok", " \t"]}, "input[1]", "blank text"),
        ({"model": "m", "input": [1, 2]}, "input", "token arrays are not accepted"),
        ({"model": "m", "input": [[1, 2], [3]]}, "input", "check_embedding_ctx_length=False"),
        ({"model": "m", "input": ["ok", None]}, "input[1]", "valid string"),
        ({"input": "x"}, "model", "Field required"),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format", "'float' or 'base64'"),
        ({"model": "m", "input": "x", "dimensions": True}, "dimensions", "valid integer"),
        ({"model": "m", "input": "x", "dimensions": -3}, "dimensions", "greater than 0"),
    ],
)
def test_embeddings_requests_are_refused_by_field(body, param, message):
    error = refused(schemas.EmbeddingsRequest, body)
    assert error.param == param and message in error.message


def test_openai_extra_fields_are_ignored_but_tei_routes_refuse_them():
    assert schemas.parse(schemas.EmbeddingsRequest, {"model": "m", "input": "x", "user": "u"}).model == "m"
    assert refused(schemas.EmbedRequest, {"inputs": "x", "normalise": False}).param == "normalise"


def test_predict_inputs_per_task():
    assert schemas.predict_inputs("sequences", "a") == [("a",)]
    assert schemas.predict_inputs("sequences", [["a", "b"], "c"]) == [("a", "b"), ("c",)]
    [question] = schemas.predict_inputs("questions", {"question": "q", "context": "c"})
    assert (question.question, question.context) == ("q", "c")
    with pytest.raises(ApiError) as caught:
        schemas.predict_inputs("questions", [{"question": "q", "context": "c"}, {"question": "q"}])
    assert caught.value.param == "inputs[1].context"


@pytest.mark.parametrize(
    ("location", "path"),
    [(("input", 2), "input[2]"), (("inputs", 0, "question"), "inputs[0].question"), ((), "body")],
)
def test_field_paths(location, path):
    assert schemas.field_path(location) == path
