"""The client API front through the session Triton: every route, the official clients, every bad input."""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from transformers import AutoTokenizer

from kubeformer_builder.serving.api.server import ApiServer
from kubeformer_builder.serving.api.settings import ApiSettings, Listen
from kubeformer_builder.serving.client import Predictor
from kubeformer_builder.serving.rerank import rerank
from tests.fixtures.models import minilm_dir as tokenizer_dir
from tests.fixtures.triton import SERVED, free_ports

pytestmark = pytest.mark.integration

TEXTS = ["ok", "The service answered quickly and the staff were kind.", "Trains arrive late in winter."]
LONG_TEXT = "word " * 400  # 402 tokens, far above max_sequence_length 64
CONTEXT = "The harbour bridge opened in 1932 and carries eight lanes of traffic."


@pytest.fixture(scope="module")
def api(triton):
    """An HTTP client of the front that `serve()` started beside the session Triton."""
    with httpx.Client(base_url=triton.api.url, timeout=60) as client:
        yield client


@pytest.fixture
def start_front(triton):
    """start_front(**settings) -> the URL of another front on the session Triton, stopped after the test."""
    servers = []

    def start(triton_url: str | None = None, **changes) -> str:
        settings = ApiSettings(
            triton_url=triton_url or triton.endpoints.grpc,
            repositories=tuple(a / "model_repository" for a in triton.artifacts.values()),
            **changes,
        )
        server = ApiServer(settings, Listen("127.0.0.1", free_ports(1)[0])).__enter__()
        servers.append(server)
        return server.listen.url

    yield start
    for server in servers:
        server.stop()


def triton_v2(triton, model: str, texts: list[str], output: str) -> np.ndarray:
    """The same texts through Triton's own KServe v2 HTTP route."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{triton.endpoints.http_port}")
    try:
        tensor = httpclient.InferInput("TEXT", [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
        return client.infer(model, [tensor]).as_numpy(output)
    finally:
        client.close()


def token_count(texts: list[str]) -> int:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir())
    return sum(len(tokenizer(t, truncation=True, max_length=64)["input_ids"]) for t in texts)


def rounded(value):
    """Floats rounded to 5 places, anywhere in nested lists and dicts: JSON answers compared by value."""
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def refusal(reply: httpx.Response, status: int, param: str) -> str:
    """The error message of a refusal, after checking its status, JSON shape and field."""
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["param"] == param, error
    assert "Traceback" not in error["message"]
    return error["message"]


# ---- OpenAI /v1/embeddings and /v1/models


def test_embeddings_equal_the_triton_v2_route(triton, api):
    reply = api.post("/v1/embeddings", json={"model": "emb", "input": TEXTS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and body["model"] == "emb"
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    got = np.array([item["embedding"] for item in body["data"]])
    np.testing.assert_allclose(got, triton_v2(triton, "emb", TEXTS, "EMBEDDING"), atol=1e-6)
    assert body["usage"] == {"prompt_tokens": token_count(TEXTS), "total_tokens": token_count(TEXTS)}


def test_embeddings_in_base64_are_the_same_floats(api):
    floats = api.post("/v1/embeddings", json={"model": "emb", "input": "one text"}).json()
    encoded = api.post(
        "/v1/embeddings", json={"model": "emb", "input": "one text", "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats["data"][0]["embedding"], rtol=1e-6)


def test_dimensions_truncate_and_renormalize(triton, api):
    reply = api.post("/v1/embeddings", json={"model": "emb_norm", "input": TEXTS, "dimensions": 8})
    got = np.array([item["embedding"] for item in reply.json()["data"]])
    full = triton_v2(triton, "emb_norm", TEXTS, "EMBEDDING")
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)  # the model normalizes
    want = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
    message = refusal(
        api.post("/v1/embeddings", json={"model": "emb", "input": "x", "dimensions": 8}), 422, "dimensions"
    )
    assert "does not normalize" in message
    refusal(
        api.post("/v1/embeddings", json={"model": "emb_norm", "input": "x", "dimensions": 4096}),
        422,
        "dimensions",
    )


def test_models_lists_every_served_ensemble(api):
    body = api.get("/v1/models").json()
    assert {m["id"]: m["task"] for m in body["data"]} == {
        name: task.value for name, (task, *_) in SERVED.items()
    }


def test_official_openai_client_works_unchanged(triton):
    import openai

    client = openai.OpenAI(base_url=triton.api.url + "/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(model="emb_norm", input=TEXTS)  # the SDK asks for base64
    got = np.array([item.embedding for item in result.data])
    np.testing.assert_allclose(got, triton_v2(triton, "emb_norm", TEXTS, "EMBEDDING"), atol=1e-6)
    assert result.usage.prompt_tokens == token_count(TEXTS)
    shortened = client.embeddings.create(model="emb_norm", input="x", dimensions=8, encoding_format="float")
    assert len(shortened.data[0].embedding) == 8
    assert [m.id for m in client.models.list()] == sorted(SERVED)
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.UnprocessableEntityError, match="input"):
        client.embeddings.create(model="emb", input=[])


def test_langchain_openai_embeddings_work_unchanged(triton):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(
        model="emb", base_url=triton.api.url + "/v1", api_key="unused", check_embedding_ctx_length=False
    )
    want = triton_v2(triton, "emb", TEXTS, "EMBEDDING")
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), want, atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_query(TEXTS[1]), want[1], atol=1e-6)


def test_over_long_text_is_truncated_and_counted_at_the_limit(triton, api):
    body = api.post("/v1/embeddings", json={"model": "emb", "input": [LONG_TEXT]}).json()
    np.testing.assert_allclose(
        body["data"][0]["embedding"], triton_v2(triton, "emb", [LONG_TEXT], "EMBEDDING")[0], atol=1e-6
    )
    assert body["usage"]["prompt_tokens"] == 64


# ---- /embed


def test_embed_normalizes_by_default_and_returns_raw_when_asked(triton, api):
    raw = triton_v2(triton, "emb", TEXTS, "EMBEDDING")
    normalized = np.array(api.post("/embed", json={"model": "emb", "inputs": TEXTS}).json())
    np.testing.assert_allclose(normalized, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    plain = api.post("/embed", json={"model": "emb", "inputs": TEXTS[0], "normalize": False}).json()
    np.testing.assert_allclose(plain, raw[:1], atol=1e-6)
    refusal(
        api.post("/embed", json={"model": "emb_norm", "inputs": "x", "normalize": False}), 422, "normalize"
    )


def test_embed_refuses_over_long_text_when_truncate_is_false(api):
    message = refusal(
        api.post("/embed", json={"model": "emb", "inputs": ["fine", LONG_TEXT], "truncate": False}),
        413,
        "inputs[1]",
    )
    assert "402 tokens is above the model's maximum of 64" in message


# ---- /predict


def test_predict_classification_matches_the_cli_client(triton, api):
    with Predictor(triton.endpoints.grpc, "cls") as predictor:
        want = [answer["labels"] for answer in predictor.predict(TEXTS)]
    assert rounded(api.post("/predict", json={"model": "cls", "inputs": TEXTS}).json()) == rounded(want)
    assert rounded(api.post("/predict", json={"model": "cls", "inputs": TEXTS[1]}).json()) == rounded(want[1])


def test_predict_token_classification_returns_entities(triton, api):
    with Predictor(triton.endpoints.grpc, "ner") as predictor:
        want = [answer["entities"] for answer in predictor.predict(TEXTS)]
    assert rounded(api.post("/predict", json={"model": "ner", "inputs": TEXTS}).json()) == rounded(want)


def test_predict_question_answering_returns_spans(triton, api):
    questions = ["When did the bridge open?", "How many lanes?"]
    with Predictor(triton.endpoints.grpc, "qa") as predictor:
        want = [
            {k: v for k, v in a.items() if k != "question"} for a in predictor.predict(questions, CONTEXT)
        ]
    items = [{"question": q, "context": CONTEXT} for q in questions]
    assert rounded(api.post("/predict", json={"model": "qa", "inputs": items}).json()) == rounded(want)
    single = api.post("/predict", json={"model": "qa", "inputs": items[0]}).json()
    assert rounded(single) == rounded(want[0])
    assert CONTEXT[single["start"] : single["end"]] == single["answer"]


def test_predict_question_answering_over_a_context_longer_than_a_window(triton, api):
    context = " ".join([CONTEXT] * 12)  # far above 64 tokens: the tokenizer splits it into windows
    questions = ["When did the bridge open?", "How many lanes?", "What opened?"]
    with Predictor(triton.endpoints.grpc, "qa") as predictor:
        want = [
            {k: v for k, v in a.items() if k != "question"} for a in predictor.predict(questions, context)
        ]
    items = [{"question": q, "context": context} for q in questions]
    assert rounded(
        api.post("/predict", json={"model": "qa", "inputs": items, "truncate": False}).json()
    ) == rounded(want)


def test_predict_pairs_match_the_cli_client(triton, api):
    pairs = [("Is it raining?", "It rains all day."), ("A cat sat.", "Stocks fell sharply.")]
    with Predictor(triton.endpoints.grpc, "cls") as predictor:
        want = [answer["labels"] for answer in predictor.predict_pairs(pairs)]
    got = api.post("/predict", json={"model": "cls", "inputs": [list(p) for p in pairs]}).json()
    assert rounded(got) == rounded(want)


def test_rerank_matches_the_cli_rerank(triton, api):
    query, texts = (
        "When do trains arrive?",
        ["Trains arrive late in winter.", "ok", "Snow covers the tracks."],
    )
    with Predictor(triton.endpoints.grpc, "xenc") as predictor:
        want = rerank(predictor, query, texts, top_n=2, return_documents=True)
    got = api.post(
        "/rerank", json={"model": "xenc", "query": query, "texts": texts, "top_n": 2, "return_text": True}
    ).json()
    assert rounded(got) == rounded(
        [{"index": w["index"], "score": w["relevance_score"], "text": w["document"]} for w in want]
    )
    everything = api.post("/rerank", json={"model": "xenc", "query": query, "texts": texts}).json()
    assert sorted(item["index"] for item in everything) == [0, 1, 2] and "text" not in everything[0]
    assert refusal(api.post("/rerank", json={"model": "cls", "query": "q", "texts": ["t"]}), 422, "model")


def test_predict_cuts_over_long_text_for_a_model_built_to_refuse(api):
    truncated = api.post("/predict", json={"model": "cls", "inputs": LONG_TEXT}).json()
    cut = api.post("/predict", json={"model": "cls_refuse", "inputs": LONG_TEXT}).json()
    assert rounded(cut) == rounded(truncated)  # same weights: the front cut what the tokenizer would keep
    refusal(
        api.post("/predict", json={"model": "cls_refuse", "inputs": LONG_TEXT, "truncate": False}),
        413,
        "inputs[0]",
    )


# ---- bad input: each gets its documented status, naming the field


@pytest.mark.parametrize(
    ("route", "body", "status", "param"),
    [
        ("/v1/embeddings", {"model": "emb", "input": []}, 422, "input"),
        ("/v1/embeddings", {"model": "emb", "input": ["fine", "   "]}, 422, "input[1]"),
        ("/v1/embeddings", {"model": "emb", "input": ["x"] * 257}, 413, "input"),
        ("/v1/embeddings", {"model": "emb", "input": 5}, 422, "input[0]"),
        ("/v1/embeddings", {"model": "emb", "input": ["fine", 7]}, 422, "input[1]"),
        ("/v1/embeddings", {"model": "emb", "input": [[101, 2023]]}, 422, "input"),
        ("/v1/embeddings", {"input": "x"}, 422, "model"),
        ("/v1/embeddings", {"model": "emb", "input": "x", "encoding_format": "hex"}, 422, "encoding_format"),
        ("/v1/embeddings", {"model": "emb", "input": "x", "dimensions": 0}, 422, "dimensions"),
        ("/v1/embeddings", {"model": "emb", "input": "x", "dimensions": "8"}, 422, "dimensions"),
        ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, "model"),
        ("/v1/embeddings", {"model": "cls", "input": "x"}, 422, "model"),
        ("/v1/embeddings", ["not", "an", "object"], 422, "body"),
        ("/embed", {"model": "emb", "inputs": "x", "normalise": True}, 422, "normalise"),
        ("/embed", {"model": "emb", "inputs": "x", "truncate": "yes"}, 422, "truncate"),
        ("/embed", {"inputs": "x"}, 422, "model"),  # two feature-extraction models are served
        ("/predict", {"model": "cls", "inputs": [["a", "b", "c"]]}, 422, "inputs[0]"),
        ("/predict", {"model": "cls", "inputs": [["a", "b"], "c"]}, 422, "inputs"),
        ("/predict", {"model": "ner", "inputs": [["a", "b"]]}, 422, "inputs[0]"),
        ("/rerank", {"model": "xenc", "query": " ", "texts": ["t"]}, 422, "query"),
        ("/rerank", {"model": "xenc", "query": "q", "texts": []}, 422, "texts"),
        ("/rerank", {"model": "xenc", "query": "q", "texts": ["t"], "top_n": 0}, 422, "top_n"),
        ("/rerank", {"model": "xenc", "query": "q", "texts": ["t"], "raw_scores": True}, 422, "raw_scores"),
        ("/rerank", {"model": "xenc", "query": "q", "texts": ["t"] * 300}, 413, "texts"),
        ("/predict", {"model": "qa", "inputs": {"question": "why?"}}, 422, "inputs[0].context"),
        ("/predict", {"model": "ner", "inputs": []}, 422, "inputs"),
        ("/predict", {"model": "cls"}, 422, "inputs"),
    ],
)
def test_bad_input_gets_its_documented_error(api, route, body, status, param):
    refusal(api.post(route, json=body), status, param)
    assert api.post("/v1/embeddings", json={"model": "emb", "input": "still serving"}).status_code == 200


def test_invalid_json_and_unknown_routes_answer_json(api):
    refusal(
        api.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "body",
    )
    reply = api.get("/v2/models")
    assert reply.status_code == 404 and reply.json()["error"]["type"] == "invalid_request_error"
    assert api.get("/v1/embeddings").status_code == 405


def _raw_request(url: str, head: str, body: bytes = b"") -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(head.encode() + b"\r\n" + body)
    return connection


def _status_line(connection: socket.socket) -> str:
    return connection.recv(65536).split(b"\r\n", 1)[0].decode()


def test_declared_huge_body_is_refused_before_it_is_read(triton):
    head = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    connection = _raw_request(triton.api.url, head + f"Content-Length: {500 * 2**20}\r\n", b'{"input": "')
    with connection:
        assert _status_line(connection) == "HTTP/1.1 413 Request Entity Too Large"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_streamed_huge_body_is_refused_with_bounded_memory(triton, api):
    chunk = b"x" * 2**20
    before = _rss_bytes()

    def body():
        yield b'{"model": "emb", "input": "'
        for _ in range(64):  # 64 MiB, far over the 8 MiB limit
            yield chunk

    try:
        reply = api.post("/v1/embeddings", content=body(), headers={"content-type": "application/json"})
        refusal(reply, 413, "body")
    except httpx.TransportError:
        pass  # the front answered 413 and closed while the client was still sending: also a refusal
    assert _rss_bytes() - before < 40 * 2**20  # the front (in this process) held at most the limit
    assert api.post("/v1/embeddings", json={"model": "emb", "input": "fine"}).status_code == 200


def test_slow_client_times_out_without_holding_others(start_front):
    url = start_front(body_timeout_s=1.0)
    head = "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
    slow = _raw_request(url, head, b'{"model": "emb", "inputs"')  # and then nothing
    with slow, httpx.Client(base_url=url, timeout=30) as client:
        reply = client.post("/embed", json={"model": "emb", "inputs": "meanwhile"})
        assert reply.status_code == 200
        assert _status_line(slow) == "HTTP/1.1 408 Request Timeout"


def test_front_answers_503_while_triton_is_not_ready(start_front):
    url = start_front(triton_url=f"grpc://127.0.0.1:{free_ports(1)[0]}")  # nothing listens there
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 503
        reply = client.post("/v1/embeddings", json={"model": "emb", "input": "x"})
        assert reply.status_code == 503 and reply.json()["error"]["type"] == "server_error"


def test_health_and_metrics(api):
    assert api.get("/health").status_code == 200
    assert api.get("/health/ready").json() == {"status": "ready"}
    api.post("/v1/embeddings", json={"model": "emb", "input": "counted"})
    text = api.get("/metrics").text
    assert 'kubeformer_front_requests_total{route="/v1/embeddings",status="200"}' in text
    assert 'kubeformer_front_request_duration_seconds_bucket{le="0.001",route="/v1/embeddings"}' in text


def test_kubeformer_api_command_serves_until_sigterm(triton):
    """What the operator's `api` container runs: `kubeformer api` in front of a Triton it did not start."""
    port = free_ports(1)[0]
    repositories = [f"--repository={a / 'model_repository'}" for a in triton.artifacts.values()]
    command = [
        sys.executable,
        "-m",
        "kubeformer_builder.cli.main",
        "api",
        f"--triton={triton.endpoints.grpc}",
    ]
    process = subprocess.Popen(
        [*command, *repositories, f"--api-port={port}"], stderr=subprocess.PIPE, text=True
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(600):
                try:
                    if client.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            reply = client.post("/embed", json={"model": "emb", "inputs": "from the pod"})
            assert reply.status_code == 200 and len(reply.json()) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit by SIGTERM, no traceback.
    assert process.returncode == -signal.SIGTERM and "Traceback" not in stderr, stderr
