"""A pair model is calibrated and judged on pairs when the calibration source names a pair column."""

from __future__ import annotations

import json

import pytest

from kubeformer_builder import inference
from kubeformer_builder.calibration import builtin_corpus
from kubeformer_builder.config import Task
from kubeformer_builder.pipeline import build
from tests.fixtures.builds import tiny_config

pytestmark = pytest.mark.integration


def test_every_calibration_and_gate_batch_holds_pairs(tiny_model, tmp_path, monkeypatch):
    sentences = builtin_corpus()[:80]
    source = tmp_path / "pairs.jsonl"
    rows = [{"premise": a, "hypothesis": b} for a, b in zip(sentences[::2], sentences[1::2], strict=True)]
    source.write_text("\n".join(json.dumps(row) for row in rows))
    seen = []
    tokenize = inference.tokenize

    def recording(tokenizer, task, texts, *args, **kwargs):
        seen.append(list(texts))
        return tokenize(tokenizer, task, texts, *args, **kwargs)

    monkeypatch.setattr(inference, "tokenize", recording)
    config = tiny_config(
        tiny_model("bert", Task.TEXT_CLASSIFICATION), Task.TEXT_CLASSIFICATION, precision="int8",
        calibration_source=f"file://{source}", calibration_column="premise",
        calibration_pair_column="hypothesis",
    )  # fmt: skip
    result = build(config, str(tmp_path / "artifact"))
    assert result.cache_key
    texts = [text for batch in seen for text in batch]
    assert texts and all(isinstance(text, tuple) and len(text) == 2 for text in texts)
    report = json.loads((tmp_path / "artifact" / "report.json").read_text())
    assert {"int8-dynamic", "int8-static"} <= {v["name"] for v in report["variants"]}
