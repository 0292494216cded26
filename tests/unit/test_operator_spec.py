"""Spec parsing and the operator's cache key: typed once, the same validation as the builder's."""

from __future__ import annotations

import json

import pytest

from kubeformer_builder.config import Backend, Precision, Task
from kubeformer_operator.config import Settings, SettingsError, load_settings
from kubeformer_operator.keys import engine_key
from kubeformer_operator.spec import SpecError, parse_spec
from tests.fixtures.specs import make_spec


def test_defaults_match_the_crd_defaults():
    spec = parse_spec(make_spec(), "demo")
    assert spec.engine.task is Task.TEXT_CLASSIFICATION
    assert spec.engine.backend is Backend.ONNXRUNTIME and spec.engine.precision is Precision.AUTO
    # an unset sequence max becomes the model's limit in the builder
    assert (spec.engine.shapes.batch.opt, spec.engine.shapes.sequence.max) == (8, None)
    assert spec.serving.replicas == 1 and spec.serving.autoscaling is None
    assert spec.build.backoff_limit == 1 and spec.build.active_deadline_seconds == 7200
    assert spec.storage.secret_ref == "s3-creds" and not spec.storage.delete_on_removal
    assert spec.engine.name == "demo"


def test_every_problem_is_reported_with_its_field_path():
    raw = make_spec(model__task="translation", optimization__shapes={"batch": {"min": 8, "opt": 4, "max": 2}})
    raw["storage"] = {}
    with pytest.raises(SpecError) as caught:
        parse_spec(raw, "demo")
    message = str(caught.value)
    assert "spec.model.task: 'translation' is not one of" in message
    assert "spec.optimization.shapes.batch: need min <= opt <= max" in message
    assert "spec.storage.uri: required" in message


def test_inline_calibration_texts_become_the_builders_json_list():
    texts = [f"text number {i}" for i in range(8)]
    spec = parse_spec(make_spec(optimization__calibration={"texts": texts}), "demo")
    assert json.loads(spec.engine.calibration.source) == texts


def test_serving_fields_do_not_change_the_cache_key_but_engine_fields_do():
    settings = Settings()
    base = engine_key(parse_spec(make_spec(), "demo"), settings)
    serving = make_spec(serving={"replicas": 5, "dynamicBatching": {"maxQueueDelayMicroseconds": 50}})
    assert engine_key(parse_spec(serving, "demo"), settings) == base
    for change in (
        {"model__revision": "v2"},
        {"optimization__precision": "int8"},
        {"model__task": "feature-extraction"},
    ):
        assert engine_key(parse_spec(make_spec(**change), "demo"), settings) != base


def test_tensorrt_key_depends_on_the_build_target():
    settings = Settings()
    trt = make_spec(optimization__backend="tensorrt")
    on_h100 = make_spec(optimization__backend="tensorrt", build__nodeSelector={"gpu": "h100"})
    assert engine_key(parse_spec(trt, "demo"), settings) != engine_key(parse_spec(on_h100, "demo"), settings)


def test_the_onnxruntime_key_is_the_builders_own():
    from kubeformer_builder.cachekey import cache_key
    from kubeformer_builder.pipeline import build_inputs

    spec = parse_spec(make_spec(), "demo")
    assert engine_key(spec, Settings()) == cache_key(build_inputs(spec.engine, "demo"))


def test_settings_fail_with_the_variable_name():
    assert load_settings({}).builder_image.startswith("ghcr.io/kubeformer/builder:")
    assert load_settings({}).fetch_image.startswith("ghcr.io/kubeformer/fetch:")  # slim, not the builder
    assert load_settings({"KUBEFORMER_FETCH_IMAGE": "f:1"}).fetch_image == "f:1"
    with pytest.raises(SettingsError, match="KUBEFORMER_METRICS_PORT: expected a int"):
        load_settings({"KUBEFORMER_METRICS_PORT": "eighty"})
    assert load_settings({"KUBEFORMER_MONITOR_LABELS": '{"release": "kps"}'}).monitor_labels == {
        "release": "kps"
    }
    with pytest.raises(SettingsError, match="KUBEFORMER_MONITOR_LABELS: expected a JSON object"):
        load_settings({"KUBEFORMER_MONITOR_LABELS": "release=kps"})
    with pytest.raises(SettingsError, match="KUBEFORMER_KEDA: expected auto, true or false"):
        load_settings({"KUBEFORMER_KEDA": "maybe"})
