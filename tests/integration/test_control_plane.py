"""The test control plane has the API semantics the operator relies on.

Each test checks one behaviour a mock server would get wrong or leave out, against the real
kube-apiserver, kube-controller-manager, kube-scheduler and kwok started by the `control_plane` fixture.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.cluster import kwok, versions
from tests.cluster.controlplane import NODE_NAME, ControlPlane

pytestmark = pytest.mark.integration

T = TypeVar("T")
GROUP, VERSION, PLURAL = "test.kubeformer.dev", "v1", "widgets"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 8},
                                    "mode": {"type": "string", "enum": ["fast", "exact"], "default": "fast"},
                                },
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll until `probe` returns something truthy and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def condition(obj: Any, kind: str) -> str | None:
    return next((c.status for c in obj.status.conditions or [] if c.type == kind), None)


def message(error: ApiException) -> str:
    """The API server's own message from an error response (a Status object)."""
    return json.loads(error.body)["message"]


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def pod_template(labels: dict[str, str], restart_policy: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{"name": "main", "image": "registry.invalid/kubeformer/test:1"}],
        },
    }


def deployment(name: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": pod_template(labels)},
    }


def job(name: str, labels: dict[str, str], backoff_limit: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": pod_template(labels, restart_policy="Never")},
    }


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="module")
def widgets(control_plane: ControlPlane) -> str:
    control_plane.apply(WIDGET_CRD)
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
    return f"{PLURAL}.{GROUP}"


def test_starts_in_seconds_once_built(control_plane: ControlPlane) -> None:
    print(f"control plane startup: {control_plane.startup_seconds:.1f}s")
    assert control_plane.startup_seconds < 60


def test_kubectl_and_python_client_reach_the_pinned_release(
    control_plane: ControlPlane, api: client.ApiClient
) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == versions.KUBERNETES
    assert version["clientVersion"]["gitVersion"] == versions.KUBERNETES
    assert client.VersionApi(api).get_code().git_version == versions.KUBERNETES
    nodes = client.CoreV1Api(api).list_node().items
    assert [n.metadata.name for n in nodes] == [NODE_NAME]


def test_custom_resources_are_validated_and_defaulted(
    control_plane: ControlPlane, api: client.ApiClient, widgets: str, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("ok", size=2))
    assert created["spec"] == {"size": 2, "mode": "fast"}  # defaulted by the schema
    assert created["metadata"]["uid"]
    assert created["metadata"]["resourceVersion"]

    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("big", size=9))
    assert refused.value.status == 422
    assert "spec.size: Invalid value: 9: spec.size in body should be less than or equal to 8" in message(
        refused.value
    )

    bad = json.dumps(widget("slow", size=1, mode="slow"))
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert 'spec.mode: Unsupported value: "slow": supported values: "fast", "exact"' in result.stderr


def test_status_is_a_subresource(api: client.ApiClient, widgets: str, namespace: str) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w", size=1))
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"status": {"phase": "Ready"}, "spec": {"size": 3}}
    )
    assert "status" not in patched  # the main resource ignores status
    assert patched["spec"]["size"] == 3
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "w", {"status": {"phase": "Ready"}, "spec": {"size": 5}}
    )
    assert status["status"] == {"phase": "Ready"}
    assert status["spec"]["size"] == 3  # and the status subresource ignores spec
    assert status["metadata"]["generation"] == patched["metadata"]["generation"] == 2


def test_stale_resource_version_update_conflicts(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    original = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "1"})
    )
    original.data = {"a": "2"}
    core.replace_namespaced_config_map("cm", namespace, original)
    original.data = {"a": "3"}  # still carries the resourceVersion read before the first update
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("cm", namespace, original)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    assert "the object has been modified" in message(conflict.value)


def test_server_side_apply_tracks_field_owners(control_plane: ControlPlane, namespace: str) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned", "namespace": namespace}}
    first = json.dumps({**cm, "data": {"replicas": "1"}})
    control_plane.kubectl("apply", "--server-side", "--field-manager=operator", "-f", "-", input=first)
    second = json.dumps({**cm, "data": {"replicas": "2"}})
    result = control_plane.kubectl(
        "apply", "--server-side", "--field-manager=user", "-f", "-", input=second, check=False
    )
    assert result.returncode != 0
    assert 'conflict with "operator"' in result.stderr


def test_job_runs_to_completion_through_kwok(api: client.ApiClient, namespace: str) -> None:
    client.BatchV1Api(api).create_namespaced_job(namespace, job("ok", {"app": "ok"}))
    done = eventually(
        lambda: (
            (j := client.BatchV1Api(api).read_namespaced_job("ok", namespace)) and condition(j, "Complete")
        ),
        "Job ok to complete",
    )
    assert done == "True"
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=ok").items
    assert [p.status.phase for p in pods] == ["Succeeded"]
    assert pods[0].spec.node_name == NODE_NAME  # placed by the real scheduler


def test_failing_job_pod_reports_exit_code_and_message(
    api: client.ApiClient, namespace: str, kwok_stage: Callable[[dict[str, Any]], None]
) -> None:
    labels = {"kubeformer.test/outcome": f"fail-{namespace}"}
    kwok_stage(
        kwok.pod_fails_stage(f"fail-{namespace}", labels, exit_code=3, message="gate failed: drop 0.2")
    )
    client.BatchV1Api(api).create_namespaced_job(namespace, job("bad", labels))
    failed = eventually(
        lambda: (
            (j := client.BatchV1Api(api).read_namespaced_job("bad", namespace)) and condition(j, "Failed")
        ),
        "Job bad to fail",
    )
    assert failed == "True"
    pod = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="job-name=bad").items[0]
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed"
    assert (terminated.exit_code, terminated.message) == (3, "gate failed: drop 0.2")


def test_deployment_becomes_available(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(deployment("web", 2, {"app": "web"}))
    )
    control_plane.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "--timeout=60s", "deployment/web"
    )
    status = json.loads(control_plane.kubectl("get", "-n", namespace, "deployment/web", "-o", "json").stdout)
    assert status["status"]["readyReplicas"] == 2


def test_pod_that_never_becomes_ready_keeps_deployment_unavailable(
    api: client.ApiClient, namespace: str, kwok_stage: Callable[[dict[str, Any]], None]
) -> None:
    labels = {"kubeformer.test/outcome": f"stuck-{namespace}"}
    kwok_stage(kwok.pod_never_ready_stage(f"stuck-{namespace}", labels))
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("stuck", 1, labels))
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    pod = eventually(
        lambda: next(
            (
                p
                for p in client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
                if p.status.phase == "Running"
            ),
            None,
        ),
        "the stuck pod to run",
    )
    assert condition(pod, "Ready") == "False"
    stuck = eventually(
        lambda: (
            (d := apps.read_namespaced_deployment("stuck", namespace)) and condition(d, "Available") and d
        ),
        "the Deployment to report availability",
    )
    assert condition(stuck, "Available") == "False"
    assert stuck.status.unavailable_replicas == 1


def test_deleting_the_owner_garbage_collects_its_children(
    control_plane: ControlPlane, api: client.ApiClient, widgets: str, namespace: str
) -> None:
    owner = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("owner", size=1)
    )
    child = deployment("child", 1, {"app": "child"})
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": "Widget",
            "name": "owner",
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(child))
    control_plane.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "--timeout=60s", "deployment/child"
    )

    client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")

    def gone() -> bool:
        names = control_plane.kubectl(
            "get", "deployments,replicasets,pods", "-n", namespace, "-o", "name"
        ).stdout
        return names.strip() == ""

    eventually(gone, "the Deployment, its ReplicaSet and its pod to be garbage-collected")


def test_restricted_pod_security_refuses_a_privileged_pod(
    api: client.ApiClient, make_namespace: Callable[..., str]
) -> None:
    name = make_namespace(labels={"pod-security.kubernetes.io/enforce": "restricted"})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "securityContext": {"privileged": True}}]
        },
    }
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api).create_namespaced_pod(name, pod)
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest": privileged' in message(refused.value)

    compliant = {
        **pod,
        "metadata": {"name": "nonroot"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsUser": 1000,
                    },
                }
            ],
        },
    }
    assert client.CoreV1Api(api).create_namespaced_pod(name, compliant).metadata.uid
