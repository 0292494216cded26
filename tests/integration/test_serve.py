"""A real tritonserver serving tiny artifacts: answers, batching, bad requests, corrupt artifacts."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from transformers import AutoTokenizer
from tritonclient.utils import InferenceServerException

from kubeformer_builder.config import Task
from kubeformer_builder.errors import ArtifactError
from kubeformer_builder.serving import serve as serve_module
from kubeformer_builder.serving.client import Predictor
from kubeformer_builder.serving.fetch import fetch_artifact_to
from kubeformer_builder.serving.serve import ServeConfig
from tests.fixtures.models import LABELS
from tests.fixtures.models import minilm_dir as tokenizer_dir

pytestmark = pytest.mark.integration

TEXTS = [
    "ok",
    "The service answered quickly and the staff were kind.",
    "A much longer review that goes on about the food, the room, the view over the harbour, "
    "the breakfast and the long walk to the station in the rain.",
]
LONG_TEXT = "word " * 400  # far above max_sequence_length 64


def direct(engine, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """The ONNX model run by onnxruntime on each unpadded text: what Triton must reproduce."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir())
    session = ort.InferenceSession(str(engine), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = []
    for text in texts:
        encoded = tokenizer(text, return_tensors="np", truncation=True, max_length=64)
        wanted = {i.name for i in session.get_inputs()}
        outputs = session.run(names, {n: encoded[n].astype(np.int64) for n in wanted})
        results.append(dict(zip(names, outputs, strict=True)))
    return results


def text_input(module, values, datatype="BYTES"):
    tensor = module.InferInput("TEXT", list(values.shape), datatype)
    tensor.set_data_from_numpy(values)
    return tensor


def infer_texts(client, model: str, texts: list[str]):
    values = np.array([[t.encode()] for t in texts], dtype=object)
    return client.infer(model, [text_input(httpclient, values)])


def test_classification_equals_direct_onnxruntime(triton, http):
    expected = direct(triton.engines["cls"], TEXTS)
    for text, want in zip(TEXTS, expected, strict=True):
        got = infer_texts(http, "cls", [text]).as_numpy("LOGITS")
        np.testing.assert_allclose(got, want["LOGITS"], atol=1e-4)
    batched = infer_texts(http, "cls", TEXTS).as_numpy("LOGITS")  # one request, three texts, one bucket
    np.testing.assert_allclose(batched, np.concatenate([e["LOGITS"] for e in expected]), atol=1e-4)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_predict_reads_task_and_labels_from_the_ensemble(triton, scheme):
    port = triton.endpoints.http_port if scheme == "http" else triton.endpoints.grpc_port
    with Predictor(f"{scheme}://127.0.0.1:{port}", "cls") as predictor:
        [answer] = predictor.predict([TEXTS[1]])
    want = direct(triton.engines["cls"], [TEXTS[1]])[0]["LOGITS"][0]
    assert [item["label"] for item in answer["labels"]] == [
        LABELS[predictor.info.task][i] for i in np.argsort(-want)
    ]
    assert sum(item["score"] for item in answer["labels"]) == pytest.approx(1.0)


def test_embeddings_equal_direct_onnxruntime(triton):
    with Predictor(triton.endpoints.grpc, "emb") as predictor:
        answers = predictor.predict(TEXTS)
    for answer, want in zip(answers, direct(triton.engines["emb"], TEXTS), strict=True):
        np.testing.assert_allclose(answer["embedding"], want["EMBEDDING"][0], atol=1e-4)


def test_token_classification_offsets_point_into_the_text(triton, http):
    text = TEXTS[1]
    result = infer_texts(http, "ner", [text])
    offsets = result.as_numpy("OFFSETS")[0]
    tokens = AutoTokenizer.from_pretrained(tokenizer_dir())(text)["input_ids"]
    assert result.as_numpy("LOGITS").shape == (1, 16, len(LABELS[Task.TOKEN_CLASSIFICATION]))
    assert (offsets[0] == -1).all() and (offsets[len(tokens) - 1] == -1).all()  # [CLS], [SEP]
    assert (offsets[len(tokens) :] == -1).all()  # padding
    words = [text[s:e] for s, e in offsets[1 : len(tokens) - 1]]
    assert words[:3] == ["The", "service", "answered"]  # spans of the original text
    with Predictor(triton.endpoints.http, "ner") as predictor:
        [answer] = predictor.predict([text])
    for entity in answer["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["word"]


def test_question_answering_returns_a_span_of_the_context(triton):
    context = "The harbour bridge opened in 1932 and carries eight lanes of traffic."
    with Predictor(triton.endpoints.http, "qa") as predictor:
        answers = predictor.predict(["When did the bridge open?", "How many lanes?"], context=context)
    for answer in answers:
        assert answer["answer"] and context[answer["start"] : answer["end"]] == answer["answer"]
        assert 0 < answer["score"] <= 1


def _model_counts(client, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model)["model_stats"][0]
    return stats["inference_count"], stats["execution_count"]


def test_concurrent_requests_of_different_lengths_are_batched(triton, http):
    before = _model_counts(http, "cls_model")
    texts = [TEXTS[i % len(TEXTS)] + " extra" * (i % 5) for i in range(96)]
    local = threading.local()

    def call(text: str) -> np.ndarray:
        if not hasattr(local, "client"):
            local.client = httpclient.InferenceServerClient(f"127.0.0.1:{triton.endpoints.http_port}")
        return infer_texts(local.client, "cls", [text]).as_numpy("LOGITS")

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, texts))
    inferences, executions = (a - b for a, b in zip(_model_counts(http, "cls_model"), before, strict=True))
    assert inferences == len(texts)
    assert executions < inferences, f"{inferences} inferences in {executions} executions: nothing was batched"
    expected = direct(triton.engines["cls"], texts[:6])
    for got, want in zip(results, expected, strict=False):
        np.testing.assert_allclose(got, want["LOGITS"], atol=1e-4)


def test_empty_text_is_refused_and_the_server_keeps_serving(triton, http):
    with pytest.raises(InferenceServerException, match=r"TEXT\[1\]: empty text"):
        infer_texts(http, "cls", ["fine", "   "])
    assert infer_texts(http, "cls", ["fine"]).as_numpy("LOGITS").shape == (1, 3)


@pytest.mark.parametrize("module", [httpclient, grpcclient])
def test_wrong_type_is_refused_and_the_server_keeps_serving(triton, http, module):
    port = triton.endpoints.http_port if module is httpclient else triton.endpoints.grpc_port
    client = module.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        with pytest.raises(InferenceServerException, match="TEXT"):
            client.infer("cls", [text_input(module, np.array([[1]], dtype=np.int32), "INT32")])
    finally:
        client.close()
    assert infer_texts(http, "cls", ["fine"]).as_numpy("LOGITS").shape == (1, 3)


def test_over_long_text_is_truncated_or_refused_as_configured(triton, http):
    truncated = infer_texts(http, "cls", [LONG_TEXT]).as_numpy("LOGITS")
    np.testing.assert_allclose(truncated, direct(triton.engines["cls"], [LONG_TEXT])[0]["LOGITS"], atol=1e-4)
    with pytest.raises(InferenceServerException, match="402 tokens is above the maximum sequence length 64"):
        infer_texts(http, "cls_refuse", [LONG_TEXT])
    assert infer_texts(http, "cls_refuse", ["fine"]).as_numpy("LOGITS").shape == (1, 3)


@pytest.fixture
def corrupt_copy(tiny_artifacts, tmp_path):
    artifacts, _ = tiny_artifacts
    copy = tmp_path / "artifact"
    shutil.copytree(artifacts["cls"], copy)
    return copy


@pytest.fixture
def no_triton(monkeypatch):
    """Fails the test if serve() gets as far as starting Triton."""

    def refuse(*args, **kwargs):
        raise AssertionError("Triton was started for a corrupt artifact")

    monkeypatch.setattr(serve_module, "TritonServer", refuse)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "model_repository/cls_model/1/model.onnx").unlink(), "model.onnx is listed"),
        (
            lambda root: (root / "model_repository/cls_tokenizer/config.pbtxt").write_text("x" * 10),
            "cls_tokenizer/config.pbtxt has 10 bytes",
        ),
        (lambda root: _flip_byte(root / "model_repository/cls_model/1/model.onnx"), "model.onnx sha256"),
    ],
)
def test_corrupt_artifact_is_refused_before_triton_starts(corrupt_copy, no_triton, tmp_path, damage, message):
    damage(corrupt_copy)
    with pytest.raises(ArtifactError, match=message):
        serve_module.serve(ServeConfig(sources=(str(corrupt_copy),)), threading.Event(), print, print)
    with pytest.raises(ArtifactError, match=message):
        fetch_artifact_to(str(corrupt_copy), tmp_path / "fetched", None)


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
