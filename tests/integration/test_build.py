"""`build` end to end on tiny models: artifact layout, manifest, report, outputs, caching."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from kubeformer_builder.config import Task
from kubeformer_builder.isa import host_cpu
from kubeformer_builder.manifest import verify_artifact
from kubeformer_builder.pipeline import build
from kubeformer_builder.stages.quantize import schemes_for
from tests.fixtures.builds import tiny_config

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("task", list(Task))
def test_every_task_builds_a_verified_repository(task, tiny_build):
    result, artifact = tiny_build("bert", task)
    manifest = verify_artifact(artifact)
    assert manifest.cache_key == result.cache_key and result.name == "bert-" + task.value
    paths = {entry.path for entry in manifest.files}
    name = result.name
    assert {
        f"model_repository/{name}/config.pbtxt",
        f"model_repository/{name}_tokenizer/config.pbtxt",
        f"model_repository/{name}_tokenizer/1/model.py",
        f"model_repository/{name}_tokenizer/1/tokenizer/tokenizer.json",
        f"model_repository/{name}_model/config.pbtxt",
        f"model_repository/{name}_model/1/model.onnx",
        "report.json",
    } <= paths
    report = json.loads((artifact / "report.json").read_text())
    assert report["kept"] == manifest.variant
    int8 = {f"int8-{scheme.name}" for scheme in schemes_for(host_cpu().isa, tensorrt=False)}
    assert {v["name"] for v in report["variants"]} >= {"fp32", *int8}
    assert all(v["gate"]["samples"] > 0 for v in report["variants"])
    benchmark = result.benchmark
    assert benchmark["p50Ms"] > 0 and benchmark["throughput"] > 0
    assert benchmark["noisy"] is True or benchmark["speedupVsPytorch"] > 0  # a noisy speedup is withheld
    library = "sentence-transformers" if task is Task.FEATURE_EXTRACTION else "transformers"
    assert report["reference"]["library"] == library and report["reference"]["version"]
    assert set(report["baseline_pytorch"]) == {"single", "batched"}
    assert all({"block_p50_ms", "spread", "noisy"} <= v.keys() for v in report["baseline_pytorch"].values())


def test_embeddings_match_pytorch_mean_pooling(tiny_build, tiny_model):
    result, artifact = tiny_build("roberta", Task.FEATURE_EXTRACTION, precision="fp32")
    model_dir = tiny_model("roberta", Task.FEATURE_EXTRACTION)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(
        ["a short text", "a somewhat longer text with more words"], padding=True, return_tensors="np"
    )
    session = ort.InferenceSession(str(artifact / f"model_repository/{result.name}_model/1/model.onnx"))
    (embedding,) = session.run(None, {k: encoded[k] for k in ("input_ids", "attention_mask")})
    model = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(v) for k, v in encoded.items()}).last_hidden_state.numpy()
    mask = encoded["attention_mask"][..., None]
    expected = (hidden * mask).sum(1) / mask.sum(1)
    assert np.allclose(embedding, expected, atol=1e-4)


def test_int8_precision_keeps_an_int8_variant(tiny_build):
    result, artifact = tiny_build("distilbert", Task.TOKEN_CLASSIFICATION, precision="int8")
    assert result.precision == "int8" and result.variant.startswith("int8-")
    report = json.loads((artifact / "report.json").read_text())
    assert all(v["precision"] == "int8" for v in report["variants"])
    kept = next(v for v in report["variants"] if v["name"] == result.variant)
    assert kept["gate"]["passed"] and kept["int8_scheme"]["name"] in result.variant
    cpu = verify_artifact(artifact).cpu
    assert cpu == report["cpu"]
    assert cpu["isa"] == host_cpu().isa.value and cpu["int8_scheme"] == kept["int8_scheme"]
    assert kept["int8_scheme"] in [s.to_dict() for s in schemes_for(host_cpu().isa, tensorrt=False)]


def test_second_build_of_same_key_is_a_cache_hit(tiny_build, tiny_model):
    first, artifact = tiny_build("bert", Task.TEXT_CLASSIFICATION)
    before = {p: p.stat().st_mtime_ns for p in artifact.rglob("*") if p.is_file()}
    config = tiny_config(tiny_model("bert", Task.TEXT_CLASSIFICATION), Task.TEXT_CLASSIFICATION)
    again = build(config, str(artifact))
    assert again.cached and again.cache_key == first.cache_key and again.benchmark == first.benchmark
    assert before == {p: p.stat().st_mtime_ns for p in artifact.rglob("*") if p.is_file()}


def test_a_changed_engine_input_rebuilds_in_place(tiny_model, tmp_path):
    model_dir = tiny_model("electra", Task.TEXT_CLASSIFICATION)
    output = tmp_path / "artifact"
    first = build(tiny_config(model_dir, Task.TEXT_CLASSIFICATION, precision="fp32"), str(output))
    second = build(
        tiny_config(model_dir, Task.TEXT_CLASSIFICATION, precision="fp32", max_drop=0.02), str(output)
    )
    assert not second.cached and second.cache_key != first.cache_key
    assert verify_artifact(output).cache_key == second.cache_key
