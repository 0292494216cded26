"""Every registered architecture exports, fuses and matches PyTorch in ONNX Runtime."""

import onnx
import pytest

from kubeformer_builder.config import Precision, Task
from kubeformer_builder.pipeline import prepare
from tests.fixtures.builds import tiny_config
from tests.fixtures.models import FAMILIES

pytestmark = pytest.mark.integration
WITHOUT_TOKEN_TYPES = {"roberta", "xlm-roberta", "camembert", "distilbert", "mpnet", "deberta-v2"}


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_family_exports_and_matches_pytorch(model_type, tiny_model, tmp_path):
    config = tiny_config(tiny_model(model_type, Task.TEXT_CLASSIFICATION), Task.TEXT_CLASSIFICATION)
    prepared = prepare(config, tmp_path, {})
    for path in (prepared.exported, prepared.fused):
        run, _ = prepared.evaluator.runner(path, Precision.FP32)
        report = prepared.evaluator.check(run)
        assert report.passed and report.score == 1.0, (model_type, path, report)
        assert report.max_abs_diff < 1e-3, (model_type, path, report)
    inputs = [i.name for i in onnx.load(str(prepared.fused)).graph.input]
    assert ("token_type_ids" in inputs) is (model_type not in WITHOUT_TOKEN_TYPES)
    assert "SkipLayerNormalization" in prepared.fused_ops


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "electra"])
def test_bert_like_families_get_full_fusion(model_type, tiny_model, tmp_path):
    config = tiny_config(tiny_model(model_type, Task.FEATURE_EXTRACTION), Task.FEATURE_EXTRACTION)
    fused_ops = prepare(config, tmp_path, {}).fused_ops
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization"} <= set(fused_ops)
