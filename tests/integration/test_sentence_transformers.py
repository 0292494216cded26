"""sentence-transformers pipelines served through the real Triton equal `SentenceTransformer.encode`.

Each layout is saved by the sentence-transformers library (tests/fixtures/sentence_models.py),
built fp32 and served; the served embedding must match the library's to float tolerance,
texts longer than max_seq_length included. A module kubeformer cannot export is refused at build
time, and the gate's reference is the library, so a wrong export cannot pass it.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling
from transformers import AutoTokenizer

from kubeformer_builder import inference, model_inputs, tasks
from kubeformer_builder.config import Gate, GateMetric, Task
from kubeformer_builder.errors import UnsupportedModelError
from kubeformer_builder.evaluation import Evaluator, make_reference
from kubeformer_builder.pipeline import build
from kubeformer_builder.sentence_pipeline import SentenceHead
from kubeformer_builder.serving.client import Predictor
from tests.fixtures.builds import tiny_config
from tests.fixtures.sentence_models import MAX_SEQ_LENGTH, make_sentence_model
from tests.fixtures.triton import Served, serving

pytestmark = pytest.mark.integration

# name -> (layout, embedding size)
SERVED = {
    "st_cls": ("cls", 32),
    "st_dense": ("mean-dense-normalize", 16),
    "st_max_old": ("max-old-config", 32),
    "st_sqrt_ln": ("sqrt-len-layernorm-dense-identity", 24),
    "st_wmean_last": ("weightedmean-lasttoken", 64),
}
TEXTS = [
    "ok",
    "The service answered quickly and the staff were kind.",
    "Ünïcödé façade, 東京 and emoji 🙂 in one sentence.",
    "A much longer review that goes on about the food, the room, the view over the harbour, " * 6,
]


def sentence_config(model_dir, name: str):
    # sequence max = the pipeline's max_seq_length: both truncate long texts at the same token.
    return tiny_config(model_dir, Task.FEATURE_EXTRACTION, name=name, precision="fp32", sequence=(1, 32, 64))


@pytest.fixture(scope="module")
def sentence_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentence-models")
    return {name: make_sentence_model(layout, root / layout) for name, (layout, _) in SERVED.items()}


@pytest.fixture(scope="module")
def served(sentence_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("sentence-artifacts")
    artifacts, engines = {}, {}
    for name, model_dir in sentence_models.items():
        build(sentence_config(model_dir, name), str(root / name))
        artifacts[name] = root / name
        engines[name] = root / name / f"model_repository/{name}_model/1/model.onnx"
    log_path = root / "tritonserver.log"
    with serving(artifacts.values(), log_path) as endpoints:
        yield Served(endpoints, artifacts, engines, log_path)


def test_the_long_text_is_longer_than_max_seq_length(sentence_models):
    tokenizer = AutoTokenizer.from_pretrained(sentence_models["st_cls"])
    assert len(tokenizer(TEXTS[-1])["input_ids"]) > MAX_SEQ_LENGTH


@pytest.mark.parametrize("name", list(SERVED))
def test_served_embedding_equals_sentence_transformers_encode(name, served, sentence_models):
    expected = SentenceTransformer(str(sentence_models[name]), device="cpu").encode(TEXTS)
    assert expected.shape == (len(TEXTS), SERVED[name][1])
    with Predictor(served.endpoints.grpc, name) as predictor:
        answers = predictor.predict(TEXTS)
    got = np.asarray([answer["embedding"] for answer in answers], dtype=np.float32)
    assert got.shape == expected.shape
    cosines = np.sum(got * expected, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosines.min() > 0.9999, cosines
    assert np.abs(got - expected).max() < 1e-4


def test_report_names_sentence_transformers_as_the_reference(served):
    report = json.loads((served.artifacts["st_dense"] / "report.json").read_text())
    import sentence_transformers

    assert report["reference"]["library"] == "sentence-transformers"
    assert report["reference"]["version"] == sentence_transformers.__version__
    assert report["reference"]["pipeline"] == ["Transformer", "Pooling", "Dense", "Normalize"]
    kept = next(v for v in report["variants"] if v["name"] == report["kept"])
    assert kept["gate"]["score"] > 0.9999


def test_a_module_that_cannot_be_exported_is_refused_with_its_type_and_path(tmp_path):
    model_dir = make_sentence_model("cnn", tmp_path / "cnn")
    with pytest.raises(UnsupportedModelError, match=r"modules\.cnn\.CNN \(path '1_CNN'\) cannot be exported"):
        build(sentence_config(model_dir, "cnn"), str(tmp_path / "out"))


def test_a_custom_module_class_is_refused_naming_it(tmp_path):
    model_dir = make_sentence_model("cls", tmp_path / "custom")
    modules = json.loads((model_dir / "modules.json").read_text())
    modules[1]["type"] = "my_project.pooling.SpecialPooling"
    (model_dir / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedModelError, match=r"my_project\.pooling\.SpecialPooling"):
        build(sentence_config(model_dir, "custom"), str(tmp_path / "out"))


def test_the_gate_compares_with_the_library_not_with_the_export(sentence_models):
    """Case 4: mean pooling exported for a cls-pooling model used to pass with drop 0.0."""
    model_dir = sentence_models["st_cls"]
    # cosine: each embedding against the library's (neighbours is degenerate on 4 texts repeated).
    config = replace(sentence_config(model_dir, "st_cls"), gate=Gate(GateMetric.COSINE, 0.01))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = tasks.load_model(model_dir, Task.FEATURE_EXTRACTION)
    names = model_inputs.select_inputs(model, tokenizer.model_input_names)
    wrong = SentenceHead([Pooling(32, pooling_mode="mean")], 32, ("Pooling(mean)",))
    wrapper = tasks.ExportWrapper(model, Task.FEATURE_EXTRACTION, names, wrong)
    sentence_model = SentenceTransformer(str(model_dir), device="cpu")
    reference = make_reference(config, model_dir, tokenizer, sentence_model)
    evaluator = Evaluator(wrapper, tokenizer, config, tuple(TEXTS * 4), reference)

    def run_wrapper(batch: inference.Batch):
        with torch.inference_mode():
            return (wrapper(*(torch.from_numpy(batch[n]) for n in names)).numpy(),)

    report = evaluator.check(run_wrapper)
    assert not report.passed and report.drop > 0.01, report


def test_a_default_prompt_is_refused(tmp_path):
    model_dir = make_sentence_model("cls", tmp_path / "prompted")
    path = model_dir / "config_sentence_transformers.json"
    config = json.loads(path.read_text())
    config.update(prompts={"query": "query: "}, default_prompt_name="query")
    path.write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="prepends the prompt 'query'"):
        build(sentence_config(model_dir, "prompted"), str(tmp_path / "out"))
