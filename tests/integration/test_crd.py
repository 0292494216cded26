"""The CRD on a real API server: examples accepted, defaults filled in, bad specs refused by field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from kubeformer_operator import names
from tests.fixtures.specs import set_paths

pytestmark = pytest.mark.integration
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
MINIMAL = {
    "model": {"source": "hf://org/model", "task": "text-classification"},
    "storage": {"uri": "s3://models/prefix"},
}


def submit(control_plane, namespace: str, spec: dict, name: str = "probe") -> dict:
    """Create with server-side dry run and strict field validation: what `kubectl apply` would get."""
    with control_plane.api_client() as api:
        return client.CustomObjectsApi(api).create_namespaced_custom_object(
            names.GROUP,
            names.VERSION,
            namespace,
            names.PLURAL,
            {
                "apiVersion": f"{names.GROUP}/{names.VERSION}",
                "kind": names.KIND,
                "metadata": {"name": name},
                "spec": spec,
            },
            dry_run="All",
            field_validation="Strict",
        )


def with_changes(**changes) -> dict:
    return set_paths(copy.deepcopy(MINIMAL), **changes)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_are_accepted(control_plane, transformer_crd, namespace, example):
    manifest = yaml.safe_load(example.read_text())
    created = submit(control_plane, namespace, manifest["spec"], manifest["metadata"]["name"])
    assert created["spec"]["model"]["task"] == manifest["spec"]["model"]["task"]


def test_defaults_are_filled_in_by_the_api_server(control_plane, transformer_crd, namespace):
    spec = submit(control_plane, namespace, MINIMAL)["spec"]
    assert spec["model"]["revision"] == "main"
    assert spec["optimization"]["backend"] == "onnxruntime" and spec["optimization"]["precision"] == "auto"
    assert spec["optimization"]["shapes"] == {
        "batch": {"min": 1, "opt": 8, "max": 32},
        "sequence": {"min": 1, "opt": 128},  # no max: the model's own limit (the builder reads it)
    }
    assert spec["optimization"]["benchmarkSeconds"] == 3.0
    assert "maxDrop" not in spec["optimization"]["accuracyGate"]  # the metric's own default applies
    assert spec["storage"]["deleteOnRemoval"] is False
    assert spec["serving"]["replicas"] == 1 and spec["build"]["backoffLimit"] == 1


BAD_SPECS = {
    "missing model": ({"storage": {"uri": "s3://models/x"}}, "spec.model: Required value"),
    "unknown task": (with_changes(model__task="translation"), "spec.model.task: Unsupported value"),
    "bad source scheme": (with_changes(model__source="http://example.com/m"), "spec.model.source"),
    "batch out of order": (
        with_changes(optimization__shapes={"batch": {"min": 8, "opt": 4, "max": 32}}),
        "optimization.shapes.batch: need min <= opt <= max",
    ),
    "sequence over limit": (
        with_changes(optimization__shapes={"sequence": {"max": 100000}}),
        "spec.optimization.shapes.sequence.max",
    ),
    "negative replicas": (with_changes(serving__replicas=-1), "spec.serving.replicas"),
    "fp16 on onnxruntime": (with_changes(optimization__precision="fp16"), "fp16 needs backend tensorrt"),
    "maxDrop over 1": (
        with_changes(optimization__accuracyGate={"maxDrop": 2}),
        "spec.optimization.accuracyGate.maxDrop",
    ),
    "unknown field": (with_changes(model__weights="big"), 'unknown field "spec.model.weights"'),
    "storage not s3": (with_changes(storage__uri="gs://bucket/x"), "spec.storage.uri"),
    "autoscaling min over max": (
        with_changes(serving__autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "need minReplicas <= maxReplicas",
    ),
    "calibration source and texts": (
        with_changes(optimization__calibration={"source": "s3://b/t.txt", "texts": ["a"] * 8}),
        "either source or texts",
    ),
    "missing storage": ({"model": MINIMAL["model"]}, "spec.storage: Required value"),
    "missing storage uri": (
        with_changes(storage={"endpoint": "http://s3:9000"}),
        "spec.storage.uri: Required",
    ),
    "missing task": (with_changes(model={"source": "hf://org/model"}), "spec.model.task: Required value"),
    "empty source": (with_changes(model__source=""), "spec.model.source"),
    "replicas not a number": (with_changes(serving__replicas="two"), "spec.serving.replicas"),
    "unknown backend": (with_changes(optimization__backend="openvino"), "spec.optimization.backend"),
    "unknown precision": (with_changes(optimization__precision="int4"), "spec.optimization.precision"),
    "unknown calibration method": (
        with_changes(optimization__calibration={"method": "kl"}),
        "spec.optimization.calibration.method",
    ),
    "unknown gate metric": (
        with_changes(optimization__accuracyGate={"metric": "bleu"}),
        "spec.optimization.accuracyGate.metric",
    ),
    "labeled metric without evaluation data": (
        with_changes(optimization__accuracyGate={"metric": "accuracy"}),
        "optimization.accuracyGate.metric: accuracy, f1 and exact_match score the model against labels",
    ),
    "evaluation source and examples": (
        with_changes(
            optimization__evaluation={"source": "file:///data/test.jsonl", "examples": [{"text": "a"}]}
        ),
        "optimization.evaluation: give either source or examples, not both",
    ),
    "evaluation source bad scheme": (
        with_changes(optimization__evaluation={"source": "http://example.com/test.csv"}),
        "spec.optimization.evaluation.source",
    ),
    "unknown truncation": (with_changes(optimization__truncation="wrap"), "spec.optimization.truncation"),
    "sequence min zero": (
        with_changes(optimization__shapes={"sequence": {"min": 0}}),
        "spec.optimization.shapes.sequence.min",
    ),
    "batch over limit": (
        with_changes(optimization__shapes={"batch": {"max": 5000}}),
        "spec.optimization.shapes.batch.max",
    ),
    "too few calibration samples": (
        with_changes(optimization__calibration={"samples": 4}),
        "spec.optimization.calibration.samples",
    ),
    "too few inline texts": (
        with_changes(optimization__calibration={"texts": ["only one"]}),
        "spec.optimization.calibration.texts",
    ),
    "empty revision": (with_changes(model__revision=""), "spec.model.revision"),
    "tokenizer bad scheme": (with_changes(model__tokenizer="ftp://x/y"), "spec.model.tokenizer"),
    "credentials secret not a name": (
        with_changes(model__credentialsSecret="My Secret"),
        "spec.model.credentialsSecret",
    ),
    "endpoint not http": (with_changes(storage__endpoint="s3.local:9000"), "spec.storage.endpoint"),
    "deleteOnRemoval not a boolean": (
        with_changes(storage__deleteOnRemoval="yes"),
        "spec.storage.deleteOnRemoval",
    ),
    "negative queue delay": (
        with_changes(serving__dynamicBatching={"maxQueueDelayMicroseconds": -5}),
        "spec.serving.dynamicBatching.maxQueueDelayMicroseconds",
    ),
    "zero preferred batch size": (
        with_changes(serving__dynamicBatching={"preferredBatchSizes": [0]}),
        "spec.serving.dynamicBatching.preferredBatchSizes[0]",
    ),
    "zero instances": (with_changes(serving__instancesPerReplica=0), "spec.serving.instancesPerReplica"),
    "bad resource quantity": (
        with_changes(serving__resources={"requests": {"cpu": "lots"}}),
        "spec.serving.resources.requests.cpu",
    ),
    "bad toleration operator": (
        with_changes(build__tolerations=[{"key": "gpu", "operator": "Maybe"}]),
        "spec.build.tolerations[0].operator",
    ),
    "backoffLimit over 10": (with_changes(build__backoffLimit=11), "spec.build.backoffLimit"),
    "deadline under a minute": (
        with_changes(build__activeDeadlineSeconds=10),
        "spec.build.activeDeadlineSeconds",
    ),
    "cpu target over 100%": (
        with_changes(serving__autoscaling={"targetCPUUtilizationPercentage": 150}),
        "spec.serving.autoscaling.targetCPUUtilizationPercentage",
    ),
    "node selector value not a string": (
        with_changes(serving__nodeSelector={"gpu": 1}),
        "spec.serving.nodeSelector.gpu",
    ),
    "pod service account not a name": (
        with_changes(serving__pod={"serviceAccountName": "Inference SA"}),
        "spec.serving.pod.serviceAccountName",
    ),
    "pod env without a name": (
        with_changes(build__pod={"env": [{"value": "http://proxy:3128"}]}),
        "spec.build.pod.env[0].name: Required value",
    ),
    "pod label value too long": (
        with_changes(serving__pod={"labels": {"team": "x" * 64}}),
        "spec.serving.pod.labels.team",
    ),
}


@pytest.mark.parametrize("case", BAD_SPECS, ids=list(BAD_SPECS))
def test_bad_specs_are_refused_naming_the_field(control_plane, transformer_crd, namespace, case):
    spec, expected = BAD_SPECS[case]
    with pytest.raises(client.ApiException) as refused:
        submit(control_plane, namespace, spec)
    assert refused.value.status in (400, 422)
    assert expected in json.loads(refused.value.body)["message"]


def test_name_too_long_for_its_children_is_refused(control_plane, transformer_crd, namespace):
    with pytest.raises(client.ApiException) as refused:
        submit(control_plane, namespace, MINIMAL, name="a" * 47)
    assert "metadata.name: must be at most 46 characters" in json.loads(refused.value.body)["message"]


def test_kubectl_lists_the_printer_columns(control_plane, transformer_crd, namespace):
    manifest = {
        "apiVersion": f"{names.GROUP}/{names.VERSION}",
        "kind": names.KIND,
        "metadata": {"name": "listed", "namespace": namespace},
        "spec": MINIMAL,
    }
    control_plane.apply(manifest)
    header, row = control_plane.kubectl("get", "ot", "-n", namespace).stdout.splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "BACKEND", "PRECISION", "PHASE", "P95", "AGE"]
    assert row.split()[:3] == ["listed", "hf://org/model", "onnxruntime"]
