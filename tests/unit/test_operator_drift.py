"""Write only on a difference: the rendering against what the API server returns for it."""

from __future__ import annotations

import copy

from kubeformer_operator import drift, names, render
from kubeformer_operator.config import Settings
from kubeformer_operator.reconcile import Context, ensure_serving
from kubeformer_operator.spec import parse_spec
from tests.fixtures.specs import make_spec, make_transformer

MANAGER = "kubeformer-operator"
KEY = "cd" * 32
TARGET = render.Target("demo", "ml", KEY, names.artifact_uri("s3://models/kubeformer", "ml", "demo", KEY))


def deployment(**serving):
    spec = parse_spec(make_spec(serving=serving), "demo")
    rendered = render.render_deployment(spec, TARGET, Settings())
    return render.owned_by(rendered, make_transformer())


def as_served(desired: dict, owned: dict | None = None) -> dict:
    """What a GET returns after an apply of `desired`: the same fields plus what the API server and the
    Deployment controller add (defaults, canonical quantities, status, metadata of its own)."""
    live = copy.deepcopy(desired)
    live["metadata"].update(
        uid="u-1", resourceVersion="42", generation=3, creationTimestamp="2026-01-01T00:00:00Z"
    )
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    live["metadata"]["managedFields"] = [
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}},
        {"manager": MANAGER, "operation": "Apply", "fieldsV1": owned or {"f:spec": {"f:template": {}}}},
    ]
    spec = live["spec"]
    spec.update(revisionHistoryLimit=10, progressDeadlineSeconds=600)
    pod = spec["template"]["spec"]
    pod.update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler", terminationGracePeriodSeconds=30)
    for container in [*pod["initContainers"], *pod["containers"]]:
        container["terminationMessagePath"] = "/dev/termination-log"
    triton = pod["containers"][0]
    triton["readinessProbe"]["successThreshold"] = 1
    triton["resources"]["requests"]["cpu"] = "1000m"  # the same quantity, spelled differently
    live["status"] = {"replicas": 1, "readyReplicas": 1, "observedGeneration": 3}
    return live


def test_a_served_object_needs_no_apply():
    desired = deployment()
    assert not drift.needs_apply(desired, as_served(desired), MANAGER)


def test_a_missing_object_needs_an_apply():
    assert drift.needs_apply(deployment(), None, MANAGER)


def test_a_changed_field_we_own_needs_an_apply():
    served = as_served(deployment())
    assert drift.needs_apply(deployment(replicas=3), served, MANAGER)
    assert drift.needs_apply(deployment(instancesPerReplica=2), served, MANAGER)  # an init container arg
    tampered = copy.deepcopy(served)
    tampered["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:1"
    assert drift.needs_apply(deployment(), tampered, MANAGER)


def test_a_removed_list_element_needs_an_apply():
    served = as_served(deployment())
    desired = deployment()
    desired["spec"]["template"]["spec"]["volumes"].pop()
    assert drift.needs_apply(desired, served, MANAGER)


def test_a_field_we_applied_before_and_no_longer_render_needs_an_apply():
    """Turning autoscaling on drops `replicas` from the rendering: only an apply hands it to the HPA."""
    before = deployment(replicas=2)
    owned = {"f:spec": {"f:replicas": {}, "f:template": {}}, "f:metadata": {"f:labels": {}}}
    served = as_served(before, owned)
    after = deployment(autoscaling={"minReplicas": 1, "maxReplicas": 4})
    assert "replicas" not in after["spec"]
    assert drift.needs_apply(after, served, MANAGER)
    # Someone else's fields are not ours to drop.
    other = copy.deepcopy(served)
    other["metadata"]["managedFields"][1]["manager"] = "kubectl"
    assert not drift.needs_apply(after, other, MANAGER)


def test_owned_list_elements_are_found_by_their_keys():
    desired = {"spec": {"ports": [{"name": "http", "port": 8000, "protocol": "TCP"}]}}
    kept = {"f:spec": {"f:ports": {'k:{"port":8000,"protocol":"TCP"}': {"f:name": {}}}}}
    gone = {"f:spec": {"f:ports": {'k:{"port":8001,"protocol":"TCP"}': {".": {}}}}}
    assert not drift.owned_but_dropped(kept, desired)
    assert drift.owned_but_dropped(gone, desired)


def test_quantities_compare_by_value_and_other_scalars_do_not():
    assert drift.covers({"cpu": "1", "gpu": 1}, {"cpu": "1000m", "gpu": "1"})
    assert not drift.covers({"cpu": "2"}, {"cpu": "1000m"})
    assert not drift.covers({"enabled": True}, {"enabled": "1"})
    assert not drift.covers({"args": ["a", "b"]}, {"args": ["a"]})


class StoredKube:
    """Keeps what is applied and returns it on get, counting writes: the API server, minus defaults."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self.writes = 0

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found else None

    def apply(self, obj: dict) -> dict:
        self.writes += 1
        self.objects[(obj["kind"], obj["metadata"]["name"])] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    def list(self, kind: str, namespace: str, labels: dict) -> list[dict]:
        return []

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.writes += 1
        return self.objects.pop((kind, name), None) is not None


def test_a_second_reconcile_of_an_unchanged_object_writes_nothing():
    kube = StoredKube()
    ctx = Context(kube=kube, settings=Settings(), service_monitor=True)
    owner = make_transformer(serving={"autoscaling": {"minReplicas": 1, "maxReplicas": 3}})
    spec = parse_spec(owner["spec"], "demo")
    ensure_serving(spec, TARGET, owner, ctx)
    assert kube.writes == 4  # Deployment, Service, HPA, ServiceMonitor
    owner["status"] = {"autoscaler": "HorizontalPodAutoscaler"}
    ensure_serving(spec, TARGET, owner, ctx)
    assert kube.writes == 4
    changed = parse_spec({**owner["spec"], "serving": {"replicas": 2}}, "demo")  # no autoscaler now
    ensure_serving(changed, TARGET, owner, ctx)
    assert kube.writes == 4 + 1 + 1  # the Deployment, and the HPA deleted
