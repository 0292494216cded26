"""Status from observations: phases, conditions, and what a Job or Deployment says. Pure functions."""

from __future__ import annotations

import json
from dataclasses import replace

from kubeformer_operator import status
from kubeformer_operator.status import DeploymentState, Engine, JobPhase, JobState, Observation, Phase

ENGINE = Engine(
    uri="s3://m/ml/demo/k",
    precision="int8",
    backend="onnxruntime",
    variant="int8-dynamic",
    size_bytes=1234,
    cpu_isa="avx512_vnni",
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
    assert ready["engine"]["cpuIsa"] == "avx512_vnni" and "gpuArch" not in ready["engine"]
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


def test_a_noisy_benchmark_shows_the_flag_and_clears_the_old_speedup():
    measured = replace(ENGINE, benchmark={"p50Ms": 1.5, "speedupVsPytorch": 3.2, "noisy": False})
    noisy = replace(ENGINE, benchmark={"p50Ms": 1.4, "noisy": True})
    before = status.compute_status(Observation(1, "k", engine=measured, deployment=READY), {}, T0)
    after = status.compute_status(Observation(2, "k2", engine=noisy, deployment=READY), before, T1)
    assert after["benchmark"] == {"p50Ms": 1.4, "noisy": True}
    patch = status.status_patch(before, after)
    assert patch["benchmark"] == {"p50Ms": 1.4, "noisy": True, "speedupVsPytorch": None}


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


# What the kubelet and the scheduler write into a stuck serving pod (API JSON, as the operator reads it).
TRITON_LOG_TAIL = (
    "E1129 model_lifecycle.cc:654] failed to load 'demo_model': model.onnx: file not found\n"
    "error: creating server: Internal - failed to load all models"
)
STUCK_DEPLOYMENT = {"metadata": {"generation": 2}, "status": {"conditions": []}}


def serving_pod(name: str = "demo-7d9c-abcde", **status_fields) -> dict:
    return {"metadata": {"name": name}, "status": status_fields}


def crash_looping(name: str = "triton", message: str = TRITON_LOG_TAIL) -> dict:
    return {
        "name": name,
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}},
    }


def test_crash_looping_triton_reports_its_last_log_lines():
    pod = serving_pod(containerStatuses=[crash_looping()])
    problem = status.serving_problem(STUCK_DEPLOYMENT, [pod])
    assert problem.reason == "CrashLoopBackOff"
    assert "container triton" in problem.message and "exit code 1 (Error)" in problem.message
    assert problem.message.endswith("failed to load all models")
    assert "back-off" not in problem.message  # changes with every restart: the status would churn


def test_image_that_cannot_be_pulled():
    waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "triton:nope"'}
    pod = serving_pod(containerStatuses=[{"name": "triton", "state": {"waiting": waiting}}])
    problem = status.serving_problem(STUCK_DEPLOYMENT, [pod])
    assert problem == status.ServingProblem(
        "ImagePullBackOff",
        'pod demo-7d9c-abcde, container triton: ImagePullBackOff: Back-off pulling image "triton:nope"',
    )


def test_unschedulable_pod_says_what_the_scheduler_said():
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    problem = status.serving_problem(STUCK_DEPLOYMENT, [serving_pod(conditions=[scheduled])])
    assert problem.reason == "Unschedulable" and problem.message.endswith(message)


def test_failed_fetch_init_container():
    terminated = {"exitCode": 7, "reason": "Error", "message": "ArtifactError: bad sha256 of model.onnx"}
    pod = serving_pod(initContainerStatuses=[{"name": "fetch", "state": {"terminated": terminated}}])
    problem = status.serving_problem(STUCK_DEPLOYMENT, [pod])
    assert problem.reason == status.CONTAINER_FAILED
    assert problem.message == (
        "pod demo-7d9c-abcde, container fetch: exit code 7 (Error): ArtifactError: bad sha256 of model.onnx"
    )


def test_progress_deadline_when_no_pod_says_more():
    progressing = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "demo-7d9c" has timed out progressing.',
    }
    deployment = {"metadata": {"generation": 2}, "status": {"conditions": [progressing]}}
    running = {"name": "triton", "ready": False, "state": {"running": {"startedAt": T0}}}
    problem = status.serving_problem(deployment, [serving_pod(containerStatuses=[running])])
    assert problem == status.ServingProblem("ProgressDeadlineExceeded", progressing["message"])


def test_pods_on_their_way_are_no_problem():
    waiting = {"name": "triton", "state": {"waiting": {"reason": "ContainerCreating"}}}
    finished_init = {"name": "fetch", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    pod = serving_pod(initContainerStatuses=[finished_init], containerStatuses=[waiting])
    assert status.serving_problem(STUCK_DEPLOYMENT, [pod]) is None
    going = {**crash_looping(), "name": "triton"}
    leaving = {**serving_pod(containerStatuses=[going]), "metadata": {"name": "old", "deletionTimestamp": T0}}
    assert status.serving_problem(STUCK_DEPLOYMENT, [leaving]) is None


def test_stuck_serving_is_in_the_ready_condition_and_a_failure():
    rolling = DeploymentState(desired=1, ready=0, updated=1, available=False, current=True)
    problem = status.ServingProblem("CrashLoopBackOff", "pod p, container triton: exit code 1 (Error): boom")
    seen = Observation(2, "k", engine=ENGINE, deployment=rolling, serving_problem=problem)
    new = status.compute_status(seen, {}, T0)
    ready = conditions(new)["Ready"]
    assert new["phase"] == "Deploying" and ready["reason"] == "CrashLoopBackOff"
    assert (
        new["message"] == "0/1 replicas ready, 1 updated: pod p, container triton: exit code 1 (Error): boom"
    )
    assert status.serving_failure(new) == ready
    on_its_way = status.compute_status(Observation(2, "k", engine=ENGINE, deployment=rolling), {}, T0)
    assert status.serving_failure(on_its_way) is None


TENSORRT = replace(
    ENGINE,
    backend="tensorrt",
    variant="int8-static",
    gpu_arch="sm_90",
    gpu_product="NVIDIA H200",
    tensorrt_version="10.11.0.33",
)


def test_tensorrt_mismatch_names_both_versions_and_the_remedies():
    assert status.tensorrt_mismatch(TENSORRT, None, "10.11.0.33") is None
    assert status.tensorrt_mismatch(ENGINE, None, "10.13.3.9") is None  # ONNX Runtime engines load anywhere
    assert status.tensorrt_mismatch(TENSORRT, "my/triton:x", "10.13.3.9") is None  # the user's image
    message = status.tensorrt_mismatch(TENSORRT, None, "10.13.3.9")
    assert "TensorRT 10.11.0.33" in message and "TensorRT 10.13.3.9" in message
    assert "spec.build.image" in message and "spec.serving.image" in message


def test_refused_engine_is_failed_not_deployed():
    seen = Observation(1, "k", engine=TENSORRT, serving_error="TensorRT differs")
    new = status.compute_status(seen, {}, T0)
    assert new["phase"] == "Failed" and new["message"] == "TensorRT differs"
    assert conditions(new)["Deployed"]["reason"] == status.TENSORRT_MISMATCH
    assert conditions(new)["BuildSucceeded"]["status"] == "True"
    assert new["engine"]["gpuProduct"] == "NVIDIA H200" and new["engine"]["tensorrtVersion"] == "10.11.0.33"


def test_labeled_gate_scores_reach_the_status_benchmark():
    labeled = {"p50Ms": 1.5, "accuracyMetric": "accuracy", "accuracyDrop": 0.002, "fp32Score": 91.2,
               "variantScore": 91.0, "dropPoints": 0.2, "extra": 1}  # fmt: skip
    engine = Engine("s3://m/ml/demo/k", "int8", "onnxruntime", "int8-dynamic", 1, benchmark=labeled)
    new = status.compute_status(Observation(1, "k", engine=engine, deployment=READY), {}, T0)
    assert new["benchmark"] == {k: v for k, v in labeled.items() if k != "extra"}
