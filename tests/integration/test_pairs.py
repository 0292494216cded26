"""Sentence pairs and rerank through the real Triton, compared with the transformers model's logits."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from tritonclient.utils import InferenceServerException

from kubeformer_builder.config import Task
from kubeformer_builder.errors import ConfigError
from kubeformer_builder.serving.client import Predictor
from kubeformer_builder.serving.rerank import rerank

pytestmark = pytest.mark.integration

PAIRS = [
    ("A man is playing a guitar.", "Someone plays music."),
    ("The cat sat on the mat.", "A dog ran through the park chasing a ball " * 6),
    ("Long premise about the weather over the harbour " * 8, "It rains."),
]
QUERY = "Where does the river flow?"
DOCUMENTS = [
    "The river flows into the lake.",
    "Bread is baked in an oven.",
    "Rivers run towards the sea.",
    "A very long document about mountains, valleys and glaciers " * 5,
]


def reference_logits(model_dir, pairs) -> np.ndarray:
    """The transformers model on each (text, text_pair), truncated longest_first at the served 64."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    rows = []
    for a, b in pairs:
        encoded = tokenizer(a, b, truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            rows.append(model(**encoded).logits[0].numpy())
    return np.stack(rows)


def infer(client, model: str, columns: dict[str, list[str]]):
    inputs = []
    for name, texts in columns.items():
        tensor = httpclient.InferInput(name, [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
        inputs.append(tensor)
    return client.infer(model, inputs)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_pairs_equal_the_transformers_model_and_single_texts_still_work(triton, tiny_model, scheme):
    with Predictor(getattr(triton.endpoints, scheme), "cls") as predictor:
        assert predictor.info.takes_pairs
        logits = predictor.pair_logits(PAIRS)
        answers = predictor.predict_pairs(PAIRS[:1])
        [single] = predictor.predict(["just one text"])
    np.testing.assert_allclose(
        logits, reference_logits(tiny_model("bert", Task.TEXT_CLASSIFICATION), PAIRS), atol=1e-4
    )
    assert answers[0]["text_pair"] == PAIRS[0][1] and len(answers[0]["labels"]) == 3
    assert len(single["labels"]) == 3


def test_rerank_orders_documents_by_the_cross_encoders_sigmoid_in_one_request(triton, cross_encoder, http):
    before = http.get_inference_statistics("xenc")["model_stats"][0]
    with Predictor(triton.endpoints.http, "xenc") as predictor:
        ranked = rerank(predictor, QUERY, DOCUMENTS, top_n=3, return_documents=True)
    after = http.get_inference_statistics("xenc")["model_stats"][0]
    scores = 1 / (1 + np.exp(-reference_logits(cross_encoder, [(QUERY, d) for d in DOCUMENTS])[:, 0]))
    order = list(np.argsort(-scores, kind="stable")[:3])
    assert [r["index"] for r in ranked] == order
    assert [r["document"] for r in ranked] == [DOCUMENTS[i] for i in order]
    np.testing.assert_allclose([r["relevance_score"] for r in ranked], scores[order], atol=1e-5)
    # One request carrying all the documents, not one request per document.
    requests = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    assert (requests, after["inference_count"] - before["inference_count"]) == (1, len(DOCUMENTS))


@pytest.mark.parametrize(
    ("model", "documents", "top_n", "message"),
    [
        ("xenc", [], None, "documents: need at least one"),
        ("xenc", ["doc"] * 33, None, "documents: 33 documents are more than xenc's max batch size 32"),
        ("xenc", ["doc"], 0, "top_n: must be >= 1"),
        ("cls", ["doc"], None, "rerank needs a cross-encoder with one output score, this model has 3 labels"),
    ],
)
def test_bad_rerank_requests_are_refused_by_field(triton, model, documents, top_n, message):
    with Predictor(triton.endpoints.http, model) as predictor, pytest.raises(ConfigError, match=message):
        rerank(predictor, QUERY, documents, top_n)


def test_pairs_for_a_single_text_model_are_refused_before_sending(triton):
    with (
        Predictor(triton.endpoints.http, "emb") as predictor,
        pytest.raises(ConfigError, match="single texts only"),
    ):
        predictor.predict_pairs([("q", "doc")])


@pytest.mark.parametrize(
    ("model", "columns", "message"),
    [
        (
            "emb",
            {"TEXT": ["a"], "TEXT_PAIR": ["b"]},
            r"expected 1 inputs but got 2 inputs for model 'emb'.*TEXT_PAIR",
        ),
        ("cls", {"TEXT": ["a", "b"], "TEXT_PAIR": ["c", " "]}, r"TEXT_PAIR\[1\]: empty text"),
        (
            "cls",
            {"TEXT": ["a", "b"], "TEXT_PAIR": ["c"]},
            "input 'TEXT' batch size does not match other inputs",
        ),
        (
            "cls_refuse",
            {"TEXT": ["word " * 40], "TEXT_PAIR": ["word " * 40]},
            "TEXT/TEXT_PAIR: 83 tokens is above the maximum sequence length 64",
        ),
    ],
)
def test_bad_pair_requests_fail_alone_naming_the_input(triton, model, columns, message):
    """The bad request is sent among good ones at the same time; only it fails."""
    good = {"TEXT": ["fine"], "TEXT_PAIR": ["also fine"]}

    def call(request) -> tuple | str:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{triton.endpoints.http_port}")
        try:
            return infer(client, *request).as_numpy("LOGITS").shape
        except InferenceServerException as error:
            return error.message()
        finally:
            client.close()

    requests = [("cls", good), (model, columns), ("cls", good), ("cls", {"TEXT": ["x"]})]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(call, requests))
    assert results[0] == results[2] == results[3] == (1, 3)
    assert isinstance(results[1], str) and re.search(message, results[1]), results[1]


def test_predict_command_prints_pairs_and_rerank(triton, tmp_path, capsys):
    from kubeformer_builder.cli.main import main

    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("\n".join(f'{{"text": "{a}", "text_pair": "{b}"}}' for a, b in PAIRS[:2]))
    url = triton.endpoints.http
    assert main(["predict", url, "--model", "cls", "--pair", *PAIRS[2], "--pairs-file", str(pairs_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(p["text"], p["text_pair"]) for p in printed] == [PAIRS[2], *PAIRS[:2]]
    assert main(["predict", url, "--model", "xenc", "--rerank", QUERY, *DOCUMENTS, "--top-n", "2"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert len(ranked) == 2 and ranked[0]["relevance_score"] >= ranked[1]["relevance_score"]
    assert "document" not in ranked[0]
    assert main(["predict", url, "--model", "xenc", "--rerank", QUERY]) == 2  # ConfigError's exit code
    assert "--rerank: give the query and at least one document" in capsys.readouterr().err
