"""A build judged on the user's labeled data: report.json holds fp32 and variant accuracy in points."""

import json
import random

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from kubeformer_builder.calibration import builtin_corpus
from kubeformer_builder.config import Task
from tests.fixtures.models import LABELS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """40 labeled sentence pairs (labels as names and ids, both allowed) in a JSON Lines file."""
    rng = random.Random(7)
    texts = builtin_corpus()[:200]
    rows = [
        {
            "premise": rng.choice(texts),
            "hypothesis": rng.choice(texts),
            "gold": rng.choice([0, 1, 2, "positive"]),
        }
        for _ in range(40)
    ]
    path = tmp_path_factory.mktemp("labeled") / "test.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, rows


def test_pair_classifier_is_judged_by_accuracy_on_labeled_pairs(pairs, tiny_build, tiny_model):
    path, rows = pairs
    overrides = {
        "evaluation_source": f"file://{path}",
        "evaluation_text_column": "premise",
        "evaluation_text_pair_column": "hypothesis",
        "evaluation_label_column": "gold",
        "max_drop": 1.0,  # a random tiny model: every variant passes, the numbers are what is checked
    }
    result, artifact = tiny_build("bert", Task.TEXT_CLASSIFICATION, **overrides)
    report = json.loads((artifact / "report.json").read_text())

    model_dir = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    encoded = tokenizer(
        [r["premise"] for r in rows], [r["hypothesis"] for r in rows],
        truncation=True, max_length=64, padding=True, return_tensors="pt",
    )  # fmt: skip
    label2id = {name: index for index, name in LABELS[Task.TEXT_CLASSIFICATION].items()}
    gold = np.array([label2id.get(r["gold"], r["gold"]) for r in rows])
    with torch.inference_mode():
        fp32 = float((model(**encoded).logits.argmax(-1).numpy() == gold).mean())

    kept = next(v for v in report["variants"] if v["name"] == report["kept"])
    for variant in report["variants"]:
        gate = variant["gate"]
        assert gate["metric"] == "accuracy" and gate["samples"] == 40
        assert gate["reference_score"] == pytest.approx(fp32)
        assert gate["points"]["fp32"] == pytest.approx(100 * fp32, abs=1e-3)
        assert gate["points"]["drop"] == pytest.approx(
            gate["points"]["fp32"] - gate["points"]["variant"], abs=2e-3
        )

    # The kept engine's own accuracy on the pairs, run here with ONNX Runtime, is the variant score.
    session = ort.InferenceSession(
        str(artifact / "model_repository" / f"{result.name}_model" / "1" / "model.onnx")
    )
    names = {i.name for i in session.get_inputs()}
    logits = session.run(None, {k: v.numpy() for k, v in encoded.items() if k in names})[0]
    assert kept["gate"]["score"] == pytest.approx(float((logits.argmax(-1) == gold).mean()))

    benchmark = result.benchmark
    assert benchmark["accuracyMetric"] == "accuracy"
    assert benchmark["fp32Score"] == pytest.approx(100 * fp32, abs=1e-3)
    assert benchmark["dropPoints"] == kept["gate"]["points"]["drop"]
