"""Models whose tokenizer emits more than they take, or allows longer texts than they index, build at
every precision and serve through the real Triton what transformers / sentence-transformers answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers
import tritonclient.http as httpclient

from kubeformer_builder.config import Task
from kubeformer_builder.pipeline import build
from tests.fixtures.builds import tiny_config
from tests.fixtures.sentence_models import mean_pooling, save_sentence_pipeline
from tests.fixtures.triton import serving

pytestmark = pytest.mark.integration

LONG_TEXT = " ".join(["the harbour view at dawn was quiet and grey"] * 20)  # about 180 tokens
TEXTS = ["ok", "The service answered quickly and the staff were kind.", LONG_TEXT]
OUTPUTS = {Task.TEXT_CLASSIFICATION: "LOGITS", Task.FEATURE_EXTRACTION: "EMBEDDING"}
DEFAULT_MAX = (1, 32, None)  # sequence max unset: the model's limit
# name -> (tiny model, task, build settings)
BUILDS = {
    "deberta_fp32": ("deberta-v3-typed-tokenizer", Task.TEXT_CLASSIFICATION, {"precision": "fp32"}),
    "deberta_int8": ("deberta-v3-typed-tokenizer", Task.TEXT_CLASSIFICATION, {"precision": "int8"}),
    "distil_fp32": ("distilbert-bert-tokenizer", Task.FEATURE_EXTRACTION, {"precision": "fp32"}),
    "distil_auto": ("distilbert-bert-tokenizer", Task.FEATURE_EXTRACTION, {"precision": "auto"}),
    "bert64": ("bert-64-positions", Task.FEATURE_EXTRACTION, {"precision": "fp32", "sequence": DEFAULT_MAX}),
    "mpnet_auto": ("mpnet", Task.FEATURE_EXTRACTION, {"precision": "auto"}),
}


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory) -> dict[str, Path]:
    found = {name: tiny_model(model, task) for name, (model, task, _) in BUILDS.items()}
    found["st64"] = save_sentence_pipeline(
        tiny_model("bert", Task.FEATURE_EXTRACTION),
        tmp_path_factory.mktemp("st") / "st64",
        mean_pooling(),
        64,
    )
    return found


@pytest.fixture(scope="module")
def artifacts(models, tmp_path_factory) -> dict[str, Path]:
    root, built = tmp_path_factory.mktemp("inputs-artifacts"), {}
    tasks = {name: (task, settings) for name, (_, task, settings) in BUILDS.items()}
    tasks["st64"] = (Task.FEATURE_EXTRACTION, {"precision": "fp32", "sequence": DEFAULT_MAX})
    for name, (task, settings) in tasks.items():
        build(tiny_config(models[name], task, name=name, **settings), str(root / name))
        built[name] = root / name
    return built


@pytest.fixture(scope="module")
def http(artifacts, tmp_path_factory):
    with serving(artifacts.values(), tmp_path_factory.mktemp("triton") / "tritonserver.log") as endpoints:
        client = httpclient.InferenceServerClient(f"{endpoints.host}:{endpoints.http_port}")
        yield client
        client.close()


def served(client, name: str, output: str) -> list[np.ndarray]:
    """One request per text, as a user sends them."""
    answers = []
    for text in TEXTS:
        tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
        answers.append(client.infer(name, [tensor]).as_numpy(output)[0])
    return answers


def transformers_reference(model_dir: Path, task: Task, max_length: int) -> list[np.ndarray]:
    """The transformers model on everything its tokenizer emits (the pipeline's way); embeddings are
    the attention-mask mean of the last hidden state."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    classifies = task is Task.TEXT_CLASSIFICATION
    auto = transformers.AutoModelForSequenceClassification if classifies else transformers.AutoModel
    model = auto.from_pretrained(model_dir).eval()
    answers = []
    for text in TEXTS:
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            output = model(**encoded)
        if task is Task.TEXT_CLASSIFICATION:
            answers.append(output.logits[0].numpy())
        else:
            mask = encoded["attention_mask"][0].unsqueeze(-1).float()
            answers.append(((output.last_hidden_state[0] * mask).sum(0) / mask.sum()).numpy())
    return answers


def shipped_onnx(artifact: Path, name: str, client, output: str) -> list[np.ndarray]:
    """The artifact's own engine run by onnxruntime on the served tokenizer's inputs: what Triton
    must reproduce for a quantized model."""
    session = ort.InferenceSession(
        str(artifact / f"model_repository/{name}_model/1/model.onnx"), providers=["CPUExecutionProvider"]
    )
    answers = []
    for text in TEXTS:
        tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
        names = [i.name for i in session.get_inputs()]
        result = client.infer(f"{name}_tokenizer", [tensor])
        answers.append(session.run([output], {n: result.as_numpy(n) for n in names})[0][0])
    return answers


def report(artifact: Path) -> dict:
    return json.loads((artifact / "report.json").read_text())


@pytest.mark.parametrize("name", ["deberta_fp32", "distil_fp32", "bert64"])
def test_fp32_serves_what_transformers_answers(name, models, artifacts, http):
    _, task, _ = BUILDS[name]
    limit = report(artifacts[name])["shapes"]["sequence"]["max"]
    expected = transformers_reference(models[name], task, limit)
    for got, want in zip(served(http, name, OUTPUTS[task]), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_inputs_the_model_ignores_are_not_served(artifacts):
    for name in ("deberta_fp32", "deberta_int8", "distil_fp32", "distil_auto"):
        assert report(artifacts[name])["model_inputs"] == ["input_ids", "attention_mask"], name
        config = (artifacts[name] / f"model_repository/{name}_model/config.pbtxt").read_text()
        assert "token_type_ids" not in config, name


@pytest.mark.parametrize("name", ["deberta_int8", "distil_auto", "mpnet_auto"])
def test_quantized_builds_serve_their_engine(name, artifacts, http):
    _, task, _ = BUILDS[name]
    expected = shipped_onnx(artifacts[name], name, http, OUTPUTS[task])
    for got, want in zip(served(http, name, OUTPUTS[task]), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_sequence_max_defaults_to_the_position_limit(artifacts):
    limit = report(artifacts["bert64"])["sequence_limit"]
    assert limit == {"tokens": 64, "bounds": {"position embeddings": 64, "tokenizer model_max_length": 512}}
    assert report(artifacts["bert64"])["shapes"]["sequence"] == {"min": 1, "opt": 32, "max": 64}


def test_sentence_transformers_max_seq_length_truncates_like_encode(models, artifacts, http):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(models["st64"]), device="cpu")
    assert reference.max_seq_length == 64
    assert len(reference.tokenizer(LONG_TEXT)["input_ids"]) > 64  # the long text is truncated
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    for got, want in zip(served(http, "st64", "EMBEDDING"), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_mpnet_static_int8_calibrates_around_infinite_activations(artifacts):
    variants = {v["name"]: v for v in report(artifacts["mpnet_auto"])["variants"]}
    static = variants["int8-static"]
    assert static["error"] is None and static["gate"] is not None
    assert static["calibration_nonfinite_tensors"], "MPNet's position bucketing takes log(0)"
    assert static["kept_fp32_nodes"]
