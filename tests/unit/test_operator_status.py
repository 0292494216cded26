"""Status from observations: phases, conditions, and what a Job or Deployment says. Pure functions."""

from __future__ import annotations

import json

from kubeformer_operator import status
from kubeformer_operator.status import DeploymentState, Engine, JobPhase, JobState, Observation, Phase

ENGINE = Engine(
    uri="s3://m/ml/demo/k",
    precision="int8",
    backend="onnxruntime",
    variant="int8-dynamic",
    size_bytes=1234,
    benchmark={"p50Ms": 1.5, "p95Ms": 2.0, "extra": 1},
)
READY = DeploymentState(desired=2, ready=2, updated=2, available=True, current=True)
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def conditions(new: dict) -> dict[str, dict]:
    return {c["type"]: c for c in new["conditions"]}


def test_invalid_spec_is_failed_with_the_message():
    new = status.compute_status(Observation(3, spec_error="spec.model.task: bad"), {}, T0)
    assert new["phase"] == "Failed" and new["observedGeneration"] == 3
    assert conditions(new)["BuildSucceeded"]["reason"] == status.INVALID_SPEC
    assert new["message"] == "spec.model.task: bad"


def test_running_build_then_ready_serving():
    job = JobState("demo-build-k", JobPhase.RUNNING, "Job demo-build-k: 1 pod(s) running")
    building = status.compute_status(Observation(1, "k", job=job), {}, T0)
    assert building["phase"] == "Building" and building["buildJob"] == "demo-build-k"
    done = JobState("demo-build-k", JobPhase.SUCCEEDED)
    ready = status.compute_status(
        Observation(1, "k", engine=ENGINE, job=done, deployment=READY), building, T1
    )
    assert ready["phase"] == "Ready"
    assert conditions(ready)["BuildSucceeded"]["reason"] == status.BUILD_COMPLETE
    assert ready["engine"]["precision"] == "int8" and ready["engine"]["sizeBytes"] == 1234
    assert ready["benchmark"] == {"p50Ms": 1.5, "p95Ms": 2.0}
    assert conditions(ready)["Ready"]["lastTransitionTime"] == T1


def test_transition_time_is_kept_while_a_condition_holds():
    first = status.compute_status(Observation(1, "k", engine=ENGINE, deployment=READY), {}, T0)
    second = status.compute_status(Observation(1, "k", engine=ENGINE, deployment=READY), first, T1)
    assert conditions(second)["Ready"]["lastTransitionTime"] == T0
    assert not status.status_changed(first, second)


def test_rollout_in_progress_is_deploying():
    rolling = DeploymentState(desired=2, ready=1, updated=1, available=True, current=True)
    new = status.compute_status(Observation(2, "k", engine=ENGINE, deployment=rolling), {}, T0)
    assert new["phase"] == "Deploying" and conditions(new)["Ready"]["reason"] == status.ROLLING_OUT


def test_failed_build_and_storage_outage():
    failed = JobState("j", JobPhase.FAILED, "GateFailed: int8 lost 3% agreement")
    new = status.compute_status(Observation(1, "k", job=failed), {}, T0)
    assert new["phase"] == "Failed" and new["message"] == "GateFailed: int8 lost 3% agreement"
    down = status.compute_status(Observation(1, "k", storage_error="storage: cannot reach"), {}, T0)
    assert down["phase"] == "Pending" and conditions(down)["BuildSucceeded"]["status"] == "Unknown"


def test_patch_clears_fields_that_no_longer_apply():
    ready = status.compute_status(Observation(1, "k", engine=ENGINE, deployment=READY), {}, T0)
    rebuilding = status.compute_status(Observation(2, "k2", job=JobState("j2", JobPhase.RUNNING)), ready, T1)
    patch = status.status_patch(ready, rebuilding)
    assert patch["engine"] is None and patch["benchmark"] is None and patch["cacheKey"] == "k2"


def job(conditions: list[dict], **extra) -> dict:
    return {"metadata": {"name": "demo-build-k"}, "status": {"conditions": conditions, **extra}}


def pod(message: str, finished: str = T1) -> dict:
    terminated = {"exitCode": 6, "message": message, "finishedAt": finished}
    return {"status": {"containerStatuses": [{"name": "builder", "state": {"terminated": terminated}}]}}


def test_job_failure_uses_the_builders_own_message():
    result = json.dumps({"status": "failed", "reason": "GateFailed", "message": "int8 lost 3%"})
    state = status.job_state(
        job([{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]), [pod(result)]
    )
    assert state.phase is JobPhase.FAILED and state.message == "GateFailed: int8 lost 3%"


def test_job_failure_without_result_uses_the_job_condition_or_log_tail():
    deadline = [
        {
            "type": "Failed",
            "status": "True",
            "reason": "DeadlineExceeded",
            "message": "Job was active longer than specified deadline",
            "lastTransitionTime": T1,
        }
    ]
    state = status.job_state(job(deadline, startTime=T0), [])
    assert "DeadlineExceeded" in state.message and state.duration_seconds == 300
    crashed = status.job_state(job(deadline), [pod("Traceback ...\nMemoryError")])
    assert crashed.message.endswith("MemoryError")


def test_job_success_carries_the_result_and_duration():
    result = json.dumps({"status": "succeeded", "benchmark": {"p95Ms": 3.0}})
    done = job([{"type": "Complete", "status": "True"}], startTime=T0, completionTime=T1)
    state = status.job_state(done, [pod(result)])
    assert state.phase is JobPhase.SUCCEEDED and state.result["benchmark"]["p95Ms"] == 3.0
    assert state.duration_seconds == 300


def test_deployment_state():
    deployment = {
        "metadata": {"generation": 4},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 4,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }
    assert status.deployment_state(deployment).rolled_out
    deployment["metadata"]["generation"] = 5
    assert not status.deployment_state(deployment).rolled_out
    assert Phase.READY.value == "Ready"


def test_waiting_for_storage():
    down = status.compute_status(Observation(1, "k", storage_error="storage: cannot reach"), {}, T0)
    assert status.waiting_for_storage(down)
    assert not status.waiting_for_storage(status.compute_status(Observation(1, "k", engine=ENGINE), {}, T0))


def test_labeled_gate_scores_reach_the_status_benchmark():
    labeled = {"p50Ms": 1.5, "accuracyMetric": "accuracy", "accuracyDrop": 0.002, "fp32Score": 91.2,
               "variantScore": 91.0, "dropPoints": 0.2, "extra": 1}  # fmt: skip
    engine = Engine("s3://m/ml/demo/k", "int8", "onnxruntime", "int8-dynamic", 1, benchmark=labeled)
    new = status.compute_status(Observation(1, "k", engine=engine, deployment=READY), {}, T0)
    assert new["benchmark"] == {k: v for k, v in labeled.items() if k != "extra"}
