"""TensorRT engine placement on the real control plane: kwok nodes labelled like GPU feature discovery
labels real ones (an H200 node, an A100 node, and the session's unlabelled node), and artifacts whose
manifests say which GPU and TensorRT built them.

No GPU builds here: the artifact is a manifest (and report) as a GPU build writes it, which is all
the operator reads before it renders the Deployment; kube-scheduler then places the pods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kubeformer_builder.manifest import Manifest, write_manifest
from kubeformer_builder.publish import REPORT_NAME
from kubeformer_builder.storage import upload_dir
from kubeformer_builder.versions import SERVING
from kubeformer_operator import names
from kubeformer_operator.config import Settings
from kubeformer_operator.keys import engine_key
from kubeformer_operator.spec import parse_spec
from tests.cluster import kwok

pytestmark = pytest.mark.integration
GPU_NODES = {
    "kwok-gpu-h200": {"product": "NVIDIA-H200", "major": "9", "minor": "0"},
    "kwok-gpu-a100": {"product": "NVIDIA-A100-SXM4-80GB", "major": "8", "minor": "0"},
}


@pytest.fixture(scope="module")
def gpu_nodes(control_plane) -> Iterator[list[str]]:
    """Two fake GPU nodes with GPU feature discovery's labels, removed after the module."""
    core = client.CoreV1Api(control_plane.api_client())
    for name, gpu in GPU_NODES.items():
        node = kwok.fake_node(name)
        node["metadata"]["labels"].update(
            {
                "nvidia.com/gpu.product": gpu["product"],
                "nvidia.com/gpu.compute.major": gpu["major"],
                "nvidia.com/gpu.compute.minor": gpu["minor"],
            }
        )
        control_plane.apply(node)
    yield list(GPU_NODES)
    for name in GPU_NODES:
        core.delete_node(name)


def publish_tensorrt_artifact(
    spec: dict, name: str, namespace: str, tensorrt: str, s3_server, monkeypatch, tmp_path: Path
) -> str:
    """A TensorRT artifact built on an H200, where the operator looks for it; returns its URI."""
    parsed = parse_spec(spec, name)
    key = engine_key(parsed, Settings())
    uri = names.artifact_uri(parsed.storage.uri, namespace, name, key)
    root = tmp_path / "artifact"
    root.mkdir()
    (root / REPORT_NAME).write_text(json.dumps({"benchmark": {"p50Ms": 1.0}}))
    versions = {"gpu_arch": "sm_90", "gpu_product": "NVIDIA H200", "tensorrt": tensorrt}
    manifest = Manifest(key, name, "text-classification", "tensorrt", "int8", "int8-static", {}, versions, ())
    write_manifest(root, manifest)
    for variable, value in s3_server.env().items():
        monkeypatch.setenv(variable, value)
    upload_dir(root, uri, s3_server.endpoint)
    return uri


@pytest.fixture
def tensorrt_spec(s3_server) -> dict:
    """A TensorRT spec stored in a bucket of its own (the source is never read: no build runs)."""
    return {
        "model": {"source": "hf://org/tiny-bert", "task": "text-classification"},
        "optimization": {"backend": "tensorrt", "precision": "int8"},
        "storage": {
            "uri": f"s3://{s3_server.new_bucket()}/artifacts",
            "endpoint": s3_server.endpoint,
            "secretRef": "s3-creds",
        },
    }


def serving_pods(transformers, name: str, timeout: float = 60) -> list:
    """The Deployment's pods once every one of them is scheduled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = transformers.core.list_namespaced_pod(
            transformers.namespace, label_selector=f"{names.TRANSFORMER}={name},{names.COMPONENT}=triton"
        ).items
        if pods and all(p.spec.node_name for p in pods):
            return pods
        time.sleep(0.3)
    raise AssertionError(f"{name}: serving pods not scheduled in {timeout:.0f}s")


def test_tensorrt_engine_serves_only_on_nodes_of_its_gpu(
    transformers, tensorrt_spec, gpu_nodes, s3_server, monkeypatch, tmp_path
):
    spec = tensorrt_spec
    spec["serving"] = {"replicas": 3}
    publish_tensorrt_artifact(
        spec, "placed", transformers.namespace, SERVING.tensorrt, s3_server, monkeypatch, tmp_path
    )
    transformers.create("placed", spec)
    status = transformers.wait(
        "placed", lambda o: (o.get("status") or {}).get("engine"), "an engine in the status"
    )["status"]
    assert status["engine"]["gpuArch"] == "sm_90" and status["engine"]["gpuProduct"] == "NVIDIA H200"
    pods = serving_pods(transformers, "placed")
    assert len(pods) == 3 and {p.spec.node_name for p in pods} == {"kwok-gpu-h200"}
    (deployment,) = transformers.apps.list_namespaced_deployment(
        transformers.namespace, label_selector=f"{names.TRANSFORMER}=placed"
    ).items
    assert (
        deployment.spec.strategy.rolling_update.max_surge,
        deployment.spec.strategy.rolling_update.max_unavailable,
    ) == (0, 1)


def test_serving_image_of_another_tensorrt_is_refused_with_an_event(
    transformers, tensorrt_spec, gpu_nodes, s3_server, monkeypatch, tmp_path
):
    spec = tensorrt_spec
    publish_tensorrt_artifact(
        spec, "stale", transformers.namespace, "10.8.0.43", s3_server, monkeypatch, tmp_path
    )
    transformers.create("stale", spec)
    failed = transformers.wait_phase("stale", "Failed")["status"]
    deployed = {c["type"]: c for c in failed["conditions"]}["Deployed"]
    assert deployed["reason"] == "TensorRTMismatch"
    assert "10.8.0.43" in deployed["message"] and SERVING.tensorrt in deployed["message"]
    event = transformers.wait_event("stale", lambda e: e["reason"] == "TensorRTMismatch", "TensorRTMismatch")
    assert event["type"] == "Warning" and "10.8.0.43" in event["message"]
    deployments = transformers.apps.list_namespaced_deployment(
        transformers.namespace, label_selector=f"{names.TRANSFORMER}=stale"
    ).items
    assert deployments == []


def test_users_gpu_node_selector_wins_over_the_engines_gpu(
    transformers, tensorrt_spec, gpu_nodes, s3_server, monkeypatch, tmp_path
):
    spec = tensorrt_spec
    spec["serving"] = {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}}
    publish_tensorrt_artifact(
        spec, "chosen", transformers.namespace, SERVING.tensorrt, s3_server, monkeypatch, tmp_path
    )
    transformers.create("chosen", spec)
    (pod,) = serving_pods(transformers, "chosen")
    assert pod.spec.node_name == "kwok-gpu-a100" and pod.spec.affinity is None
