"""The operator end to end: kubectl-style objects in, Jobs, Deployments and status out.

Real kube-apiserver, controller-manager, scheduler and kwok (tests/cluster), real SeaweedFS, the
real builder, and `kubeformer-operator` as a separate process. kwok plays the kubelet: the build
Job's pod is held running while the test runs the Job's own command here, then completed with the
builder's real JSON result as its termination message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kubeformer_builder.config import Task
from kubeformer_builder.pipeline import build
from kubeformer_operator import names, render
from kubeformer_operator.config import Settings
from kubeformer_operator.keys import engine_key
from kubeformer_operator.spec import parse_spec
from tests.cluster import kwok
from tests.fixtures.operator import REPO, Operator
from tests.fixtures.processes import free_port

pytestmark = pytest.mark.integration
RELEASE = "kubeformer-test/release"
PEERING_CRDS = REPO / "crds" / "kopf-peering.yaml"


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    """One bucket for the module (SeaweedFS gives each bucket its own volumes); paths differ by namespace."""
    return s3_server.new_bucket()


@pytest.fixture
def spec_for(tiny_model, s3_server, bucket):
    """A spec for a tiny BERT classifier, stored in the test SeaweedFS."""

    def make(**changes) -> dict:
        spec = {
            "model": {
                "source": f"file://{tiny_model('bert', Task.TEXT_CLASSIFICATION)}",
                "task": "text-classification",
            },
            "optimization": {
                "precision": "fp32",
                "shapes": {
                    "batch": {"min": 1, "opt": 2, "max": 4},
                    "sequence": {"min": 1, "opt": 16, "max": 32},
                },
                "calibration": {"samples": 16},
            },
            "storage": {
                "uri": f"s3://{bucket}/artifacts",
                "endpoint": s3_server.endpoint,
                "secretRef": "s3-creds",
            },
        }
        for section, values in changes.items():
            spec.setdefault(section, {}).update(values)
        return spec

    return make


def prebuild(spec: dict, name: str, namespace: str, s3_server, monkeypatch) -> str:
    """Build with the real builder to where the operator will look; returns the artifact URI."""
    parsed = parse_spec(spec, name)
    key = engine_key(parsed, Settings())
    uri = names.artifact_uri(parsed.storage.uri, namespace, name, key)
    for variable, value in s3_server.env().items():
        monkeypatch.setenv(variable, value)
    build(parsed.engine, uri)
    return uri


def hold_builds(kwok_stage, namespace: str) -> None:
    """Build pods stay running until released (kwok would otherwise complete them at once)."""
    kwok_stage(kwok.pod_held_stage(f"hold-{namespace}", {names.COMPONENT: "build"}, RELEASE))


def release_build_pods(transformers, job_name: str, stage: dict, kwok_stage) -> None:
    """Apply the stage that ends the Job's pods, then label them so kwok moves them through it."""
    kwok_stage(stage)
    pods = transformers.core.list_namespaced_pod(
        transformers.namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
    )
    assert pods.items, f"no pod for Job {job_name}"
    for pod in pods.items:
        transformers.core.patch_namespaced_pod(
            pod.metadata.name,
            transformers.namespace,
            {"metadata": {"labels": {RELEASE: stage["metadata"]["name"]}}},
        )


def run_job_here(job: dict, s3_server, tmp_path: Path) -> tuple[int, str]:
    """The Job's own container command, run on this machine; returns (exit code, termination message)."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    termination = tmp_path / f"termination-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **s3_server.env(), "KUBEFORMER_TERMINATION_LOG": str(termination)}
    command = [sys.executable, "-m", "kubeformer_builder.cli.main", *container["args"]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, termination.read_text()


def children(transformers, name: str) -> dict[str, object]:
    ns = transformers.namespace
    selector = f"{names.TRANSFORMER}={name}"
    return {
        "deployments": transformers.apps.list_namespaced_deployment(ns, label_selector=selector).items,
        "services": transformers.core.list_namespaced_service(ns, label_selector=selector).items,
        "jobs": transformers.jobs(name),
    }


def test_cache_hit_deploys_without_a_build(transformers, spec_for, s3_server, monkeypatch, operator):
    hits_before = operator.metrics().get("kubeformer_cache_hits_total", 0)
    spec = spec_for()
    uri = prebuild(spec, "cached", transformers.namespace, s3_server, monkeypatch)
    transformers.create("cached", spec)
    ready = transformers.wait_phase("cached", "Ready")
    status = ready["status"]
    assert status["engine"]["uri"] == uri and status["engine"]["precision"] == "fp32"
    assert status["cacheKey"] == uri.rsplit("/", 1)[1]
    benchmark = status["benchmark"]
    assert {"p50Ms", "p95Ms", "throughput", "noisy"} <= benchmark.keys()
    assert benchmark["noisy"] or "speedupVsPytorch" in benchmark  # a noisy speedup is withheld
    assert status["endpoint"]["http"] == f"http://cached.{transformers.namespace}.svc:8000"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["BuildSucceeded"]["reason"] == "ArtifactCached"
    assert all(c["status"] == "True" for c in conditions.values())
    found = children(transformers, "cached")
    assert found["jobs"] == []
    (deployment,) = found["deployments"]
    assert deployment.metadata.owner_references[0].kind == "OptimizedTransformer"
    assert deployment.spec.template.spec.init_containers[0].args[1] == uri
    (service,) = found["services"]
    assert {p.port for p in service.spec.ports} == {8000, 8001, 8002, 8080}  # Triton and the API front
    metrics = operator.metrics()
    assert metrics["kubeformer_cache_hits_total"] == hits_before + 1
    assert metrics['kubeformer_objects{phase="Ready"}'] >= 1
    assert metrics["kubeformer_reconcile_duration_seconds_count"] >= 2


def test_build_path_runs_the_jobs_command_and_reports_its_benchmark(
    transformers, spec_for, s3_server, kwok_stage, tmp_path, operator
):
    succeeded = 'kubeformer_builds_total{result="succeeded"}'
    builds_before = operator.metrics().get(succeeded, 0)
    hold_builds(kwok_stage, transformers.namespace)
    transformers.create("built", spec_for())
    job = transformers.wait_job("built")
    building = transformers.wait_phase("built", "Building")
    key = building["status"]["cacheKey"]
    assert job["metadata"]["name"] == f"built-build-{key[:10]}"
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    assert s3_server.secret_key not in json.dumps(job)

    code, result = run_job_here(job, s3_server, tmp_path)
    assert code == 0, result
    release_build_pods(
        transformers,
        job["metadata"]["name"],
        kwok.pod_succeeds_stage(
            f"ok-{transformers.namespace}", {RELEASE: f"ok-{transformers.namespace}"}, result
        ),
        kwok_stage,
    )

    ready = transformers.wait_phase("built", "Ready")
    reported = json.loads(result)["benchmark"]
    assert ready["status"]["benchmark"]["p95Ms"] == reported["p95Ms"]
    assert {c["type"]: c["reason"] for c in ready["status"]["conditions"]}[
        "BuildSucceeded"
    ] == "BuildComplete"
    assert len(transformers.jobs("built")) == 1
    for reason in ("BuildRunning", "Available"):
        transformers.wait_event("built", lambda e, reason=reason: e["reason"] == reason, f"reason {reason}")
    assert operator.metrics()[succeeded] == builds_before + 1


def test_serving_change_rolls_the_deployment_and_engine_change_rebuilds(
    transformers, spec_for, s3_server, monkeypatch, kwok_stage
):
    spec = spec_for()
    prebuild(spec, "change", transformers.namespace, s3_server, monkeypatch)
    transformers.create("change", spec)
    first_key = transformers.wait_phase("change", "Ready")["status"]["cacheKey"]

    transformers.patch_spec(
        "change", {"serving": {"replicas": 3, "dynamicBatching": {"maxQueueDelayMicroseconds": 250}}}
    )
    transformers.wait(
        "change",
        lambda o: o["status"].get("replicas") == 3 and o["status"]["phase"] == "Ready",
        "3 ready replicas",
    )
    (deployment,) = children(transformers, "change")["deployments"]
    assert "--max-queue-delay-us=250" in deployment.spec.template.spec.init_containers[0].args
    assert transformers.jobs("change") == []

    hold_builds(kwok_stage, transformers.namespace)
    transformers.patch_spec(
        "change", {"optimization": {"shapes": {"sequence": {"min": 1, "opt": 16, "max": 48}}}}
    )
    rebuilding = transformers.wait(
        "change", lambda o: o["status"].get("cacheKey") not in (None, first_key), "a new cacheKey"
    )
    assert rebuilding["status"]["phase"] == "Building"
    (job,) = transformers.jobs("change")
    assert job["metadata"]["annotations"][names.CACHE_KEY] == rebuilding["status"]["cacheKey"]


def test_job_failure_reports_the_builders_message_and_does_not_retry(
    transformers, spec_for, s3_server, kwok_stage, tmp_path
):
    spec = spec_for(model={"source": "file:///nonexistent/model"})
    # The Job's command, as the operator renders it, run here first: its real failure is what every
    # attempt of the Job's pods reports (kwok plays the pods, the builder's message is real).
    command = {"spec": {"template": {"spec": {"containers": [{"args": builder_args_for(spec, "broken")}]}}}}
    code, result = run_job_here(command, s3_server, tmp_path)
    failure = json.loads(result)
    assert code != 0 and failure["status"] == "failed"
    kwok_stage(
        kwok.pod_fails_stage(f"fail-{transformers.namespace}", {names.TRANSFORMER: "broken"}, code, result)
    )
    transformers.create("broken", spec)

    failed = transformers.wait_phase("broken", "Failed", timeout=90)
    assert failure["message"] in failed["status"]["message"]
    transformers.wait_event(
        "broken",
        lambda e: e["type"] == "Warning" and failure["message"] in e["message"],
        "the builder's message as a Warning",
    )
    time.sleep(3)  # a retry would have created a second Job by now
    assert len(transformers.jobs("broken")) == 1
    assert transformers.get("broken")["status"]["phase"] == "Failed"


def builder_args_for(spec: dict, name: str) -> list[str]:
    parsed = parse_spec(spec, name)
    return render.builder_args(parsed.engine, "s3://unused/never-written")


def test_restarted_operator_adopts_the_running_job(transformers, spec_for, operator, kwok_stage):
    hold_builds(kwok_stage, transformers.namespace)
    transformers.create("restart", spec_for())
    job = transformers.wait_job("restart")
    transformers.wait_phase("restart", "Building")
    operator.stop(kill=True)
    operator.start()
    time.sleep(3)
    (still,) = transformers.jobs("restart")
    assert still["metadata"]["uid"] == job["metadata"]["uid"]
    stage = kwok.pod_fails_stage(
        f"end-{transformers.namespace}",
        {RELEASE: f"end-{transformers.namespace}"},
        6,
        json.dumps({"status": "failed", "reason": "GateFailed", "message": "gate says no"}),
    )
    release_build_pods(transformers, job["metadata"]["name"], stage, kwok_stage)
    failed = transformers.wait_phase("restart", "Failed", timeout=90)
    assert "gate says no" in failed["status"]["message"]
    assert len(transformers.jobs("restart")) == 1


@pytest.mark.parametrize("delete_on_removal", [True, False])
def test_deletion_removes_children_and_artifacts_only_when_asked(
    transformers, spec_for, s3_server, monkeypatch, delete_on_removal
):
    spec = spec_for(storage={"deleteOnRemoval": delete_on_removal})
    name = f"gone-{str(delete_on_removal).lower()}"
    uri = prebuild(spec, name, transformers.namespace, s3_server, monkeypatch)
    transformers.create(name, spec)
    transformers.wait_phase(name, "Ready")
    transformers.delete(name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        transformers.get(name) or children(transformers, name)["deployments"]
    ):
        time.sleep(0.3)
    assert transformers.get(name) is None
    assert children(transformers, name)["deployments"] == [], "the Deployment was not garbage-collected"
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    left = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0)
    assert (left == 0) is delete_on_removal


def test_with_peering_only_the_highest_priority_replica_acts(
    control_plane,
    operator,
    transformers,
    spec_for,
    s3_server,
    monkeypatch,
    tmp_path,
    without_session_operator,
):
    control_plane.apply(*yaml.safe_load_all(PEERING_CRDS.read_text()))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
    control_plane.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "kubeformer"}}
    )
    replicas = [
        Operator(
            operator.kubeconfig,
            tmp_path / f"replica-{priority}.log",
            {"KUBEFORMER_PEERING": "kubeformer", "KUBEFORMER_PEERING_PRIORITY": str(priority)},
        )
        for priority in (10, 5)
    ]
    try:
        for replica in replicas:
            replica.start()
        spec = spec_for()
        prebuild(spec, "peered", transformers.namespace, s3_server, monkeypatch)
        transformers.create("peered", spec)
        transformers.wait_phase("peered", "Ready")
        leader, follower = (
            r.metrics().get("kubeformer_reconcile_duration_seconds_count", 0) for r in replicas
        )
        assert leader > 0 and follower == 0
    finally:
        for replica in replicas:
            replica.stop()


def test_build_job_deleted_by_hand_is_recreated(transformers, spec_for, kwok_stage):
    hold_builds(kwok_stage, transformers.namespace)
    transformers.create("redo", spec_for())
    first = transformers.wait_job("redo")
    transformers.batch.delete_namespaced_job(
        first["metadata"]["name"], transformers.namespace, propagation_policy="Background"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = transformers.jobs("redo")
        if jobs and jobs[0]["metadata"]["uid"] != first["metadata"]["uid"]:
            break
        time.sleep(0.3)
    (again,) = transformers.jobs("redo")
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    assert transformers.get("redo")["status"]["phase"] == "Building"


def test_credentials_never_leave_their_secret(
    control_plane, transformers, spec_for, s3_server, monkeypatch, operator, kwok_stage
):
    """The planted S3 secret key appears nowhere: objects, status, Events, Job args, operator logs."""
    hold_builds(kwok_stage, transformers.namespace)
    spec = spec_for()
    prebuild(spec, "served", transformers.namespace, s3_server, monkeypatch)
    transformers.create("served", spec)
    transformers.create("building", spec_for(optimization={"precision": "int8"}))
    transformers.wait_phase("served", "Ready")
    transformers.wait_job("building")
    kinds = "optimizedtransformers,jobs,deployments,replicasets,pods,services,events"
    dumped = control_plane.kubectl("get", kinds, "-n", transformers.namespace, "-o", "yaml").stdout
    assert "s3-creds" in dumped  # the references are there...
    assert s3_server.secret_key not in dumped  # ...the value is not
    assert s3_server.secret_key not in operator.logs()


def test_build_over_its_deadline_fails_with_the_reason(transformers, spec_for, kwok_stage):
    hold_builds(kwok_stage, transformers.namespace)
    transformers.create("slow", spec_for(build={"activeDeadlineSeconds": 60}))
    transformers.wait_job("slow")
    failed = transformers.wait_phase("slow", "Failed", timeout=150)
    assert "DeadlineExceeded" in failed["status"]["message"]
    assert len(transformers.jobs("slow")) == 1


def test_unreachable_storage_or_missing_secret_is_pending_with_the_cause(transformers, spec_for):
    transformers.create("nos3", spec_for(storage={"endpoint": f"http://127.0.0.1:{free_port()}"}))
    transformers.create("nosecret", spec_for(storage={"secretRef": "absent"}))
    down = transformers.wait_phase("nos3", "Pending", timeout=90)
    assert "cannot reach the S3 endpoint" in down["status"]["message"]
    missing = transformers.wait_phase("nosecret", "Pending")
    assert f"Secret {transformers.namespace}/absent does not exist" in missing["status"]["message"]
    assert transformers.jobs("nos3") == [] and transformers.jobs("nosecret") == []


def test_operator_follows_changes_after_an_api_server_restart(
    control_plane, transformers, spec_for, s3_server, monkeypatch
):
    spec = spec_for()
    prebuild(spec, "survivor", transformers.namespace, s3_server, monkeypatch)
    transformers.create("survivor", spec)
    transformers.wait_phase("survivor", "Ready")
    control_plane.restart_apiserver()
    transformers.patch_spec("survivor", {"serving": {"replicas": 2}})
    transformers.wait(
        "survivor",
        lambda o: o["status"].get("replicas") == 2 and o["status"]["phase"] == "Ready",
        "2 ready replicas after the restart",
        timeout=120,
    )
    assert transformers.jobs("survivor") == []


def test_concurrent_writers_never_make_the_status_lie(
    transformers, spec_for, s3_server, monkeypatch, operator
):
    """Another client keeps updating the object while the operator reconciles: status writes are
    merge patches of the status subresource, so neither side gets a 409 and the end state is right."""
    spec = spec_for()
    prebuild(spec, "contended", transformers.namespace, s3_server, monkeypatch)
    transformers.create("contended", spec)
    for round in range(20):
        transformers.custom.patch_namespaced_custom_object(
            names.GROUP,
            names.VERSION,
            transformers.namespace,
            names.PLURAL,
            "contended",
            {"metadata": {"labels": {"round": str(round)}}},
        )
    ready = transformers.wait_phase("contended", "Ready")
    assert ready["metadata"]["labels"]["round"] == "19"
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"]
    assert "Conflict" not in operator.logs()  # a 409 would be logged as "409 Conflict"


def ready_condition(obj: dict) -> dict:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}.get("Ready", {})


def test_crash_looping_triton_reports_its_last_log_lines(
    transformers, spec_for, s3_server, monkeypatch, kwok_stage
):
    """kwok plays a Triton that exits on a model load error: the status and a Warning say why."""
    log_tail = "error: creating server: Internal - failed to load all models"
    kwok_stage(
        kwok.pod_crash_loop_stage(f"crash-{transformers.namespace}", {names.TRANSFORMER: "crash"}, log_tail)
    )
    spec = spec_for()
    prebuild(spec, "crash", transformers.namespace, s3_server, monkeypatch)
    transformers.create("crash", spec)
    stuck = transformers.wait(
        "crash", lambda o: ready_condition(o).get("reason") == "CrashLoopBackOff", "a crash loop"
    )
    assert stuck["status"]["phase"] == "Deploying"
    assert stuck["status"]["message"].endswith(log_tail)
    transformers.wait_event(
        "crash",
        lambda e: e["type"] == "Warning" and e["reason"] == "CrashLoopBackOff" and log_tail in e["message"],
        "a CrashLoopBackOff Warning with Triton's last log line",
    )


def test_unschedulable_serving_pod_reports_the_schedulers_message(
    transformers, spec_for, s3_server, monkeypatch
):
    """The real scheduler finds no node for the nodeSelector: the status says so, not 'Deploying 0/1'."""
    spec = spec_for(serving={"nodeSelector": {"kubeformer.dev/no-such-node": "true"}})
    prebuild(spec, "nowhere", transformers.namespace, s3_server, monkeypatch)
    transformers.create("nowhere", spec)
    stuck = transformers.wait(
        "nowhere", lambda o: ready_condition(o).get("reason") == "Unschedulable", "an unschedulable pod"
    )
    assert "node(s) didn't match Pod's node affinity/selector" in stuck["status"]["message"]
    transformers.wait_event(
        "nowhere",
        lambda e: e["type"] == "Warning" and e["reason"] == "Unschedulable",
        "an Unschedulable Warning",
    )
