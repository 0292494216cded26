"""Observed state in, status out: phase, conditions, engine, benchmark and endpoint. Pure functions.

The whole status is computed once per reconcile from what the operator saw (spec problems, the
artifact, the build Job, the Deployment) and written once, only when it changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

Obj = dict[str, Any]

# Condition types.
BUILD_SUCCEEDED, DEPLOYED, READY = "BuildSucceeded", "Deployed", "Ready"

# Condition reasons.
INVALID_SPEC = "InvalidSpec"
STORAGE_UNAVAILABLE = "StorageUnavailable"
ARTIFACT_CACHED = "ArtifactCached"
BUILD_RUNNING = "BuildRunning"
BUILD_COMPLETE = "BuildComplete"
BUILD_FAILED = "BuildFailed"
WAITING_FOR_ARTIFACT = "WaitingForArtifact"
SERVING_APPLIED = "ServingApplied"
ROLLING_OUT = "RollingOut"
AVAILABLE = "Available"
# Ready=False reasons that say serving is stuck, not just on its way (besides the pods' own waiting
# reasons below): the Deployment gave up progressing, a container keeps failing.
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
UNSCHEDULABLE = "Unschedulable"
CONTAINER_FAILED = "ContainerFailed"
# A container's waiting reasons that no waiting fixes: the kubelet keeps retrying, the pod never gets ready.
STUCK_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
TERMINATION_MESSAGE_CHARS = 1000  # the end of a termination message: Triton's last log lines
TENSORRT_MISMATCH = "TensorRTMismatch"


class Phase(str, Enum):
    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    READY = "Ready"
    FAILED = "Failed"


class JobPhase(str, Enum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobState:
    name: str
    phase: JobPhase
    message: str = ""
    reason: str = ""
    duration_seconds: float | None = None
    result: Obj = field(default_factory=dict)  # the builder's JSON result, when it wrote one


@dataclass(frozen=True)
class DeploymentState:
    desired: int
    ready: int
    updated: int
    available: bool
    current: bool  # the controller has seen the latest spec

    @property
    def rolled_out(self) -> bool:
        return self.current and self.available and self.updated >= self.desired


@dataclass(frozen=True)
class ServingProblem:
    """Why the serving pods do not become ready: a condition reason and a message for people."""

    reason: str
    message: str


@dataclass(frozen=True)
class Engine:
    """The artifact a Ready object serves, as its manifest and report describe it."""

    uri: str
    precision: str
    backend: str
    variant: str
    size_bytes: int
    gpu_arch: str | None = None
    gpu_product: str | None = None
    tensorrt_version: str | None = None
    cpu_isa: str | None = None  # the build CPU's integer dot-product ISA (onnxruntime builds)
    benchmark: Obj = field(default_factory=dict)
    cached: bool = True  # found in storage before any build of ours ran


@dataclass(frozen=True)
class Observation:
    generation: int
    key: str | None = None
    spec_error: str | None = None
    storage_error: str | None = None
    serving_error: str | None = None  # why the engine must not be rolled (TensorRT mismatch)
    engine: Engine | None = None
    job: JobState | None = None
    deployment: DeploymentState | None = None
    serving_problem: ServingProblem | None = None  # only looked for while not rolled out
    autoscaler: str | None = None  # the autoscaler kind applied, "none" when none
    endpoint: Obj | None = None


def _condition(kind: str, ok: bool | None, reason: str, message: str, generation: int) -> Obj:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _build_condition(seen: Observation) -> tuple[Obj, Phase | None]:
    """BuildSucceeded and, when the build decides it, the phase (None: decided by serving)."""
    g = seen.generation
    if seen.spec_error:
        return _condition(BUILD_SUCCEEDED, False, INVALID_SPEC, seen.spec_error, g), Phase.FAILED
    if seen.engine is not None:
        if seen.job is not None:  # the artifact is our Job's, even if its pod has not exited yet
            return _condition(
                BUILD_SUCCEEDED, True, BUILD_COMPLETE, f"Job {seen.job.name} built the engine", g
            ), None
        return _condition(
            BUILD_SUCCEEDED, True, ARTIFACT_CACHED, "a complete artifact exists, no build needed", g
        ), None
    if seen.storage_error:
        return _condition(BUILD_SUCCEEDED, None, STORAGE_UNAVAILABLE, seen.storage_error, g), Phase.PENDING
    if seen.job is None:
        return _condition(BUILD_SUCCEEDED, False, BUILD_RUNNING, "creating the build Job", g), Phase.BUILDING
    if seen.job.phase is JobPhase.FAILED:
        return _condition(BUILD_SUCCEEDED, False, BUILD_FAILED, seen.job.message, g), Phase.FAILED
    if seen.job.phase is JobPhase.SUCCEEDED:
        message = (
            f"Job {seen.job.name} succeeded but no manifest.json is in storage; delete the Job to rebuild"
        )
        return _condition(BUILD_SUCCEEDED, False, BUILD_FAILED, message, g), Phase.FAILED
    return _condition(
        BUILD_SUCCEEDED, False, BUILD_RUNNING, seen.job.message or f"Job {seen.job.name} is running", g
    ), Phase.BUILDING


def _serving_conditions(seen: Observation) -> tuple[Obj, Obj, Phase]:
    g = seen.generation
    if seen.serving_error:
        return (
            _condition(DEPLOYED, False, TENSORRT_MISMATCH, seen.serving_error, g),
            _condition(READY, False, TENSORRT_MISMATCH, seen.serving_error, g),
            Phase.FAILED,
        )
    if seen.engine is None or seen.deployment is None:
        waiting = "serving starts once the engine is built"
        return (
            _condition(DEPLOYED, False, WAITING_FOR_ARTIFACT, waiting, g),
            _condition(READY, False, WAITING_FOR_ARTIFACT, waiting, g),
            Phase.PENDING,
        )
    deployed = _condition(DEPLOYED, True, SERVING_APPLIED, "Deployment, Service and autoscaling applied", g)
    state = seen.deployment
    if state.rolled_out:
        message = f"{state.ready}/{state.desired} replicas ready"
        return deployed, _condition(READY, True, AVAILABLE, message, g), Phase.READY
    message = f"{state.ready}/{state.desired} replicas ready, {state.updated} updated"
    if seen.serving_problem is not None:
        problem = seen.serving_problem
        ready = _condition(READY, False, problem.reason, f"{message}: {problem.message}", g)
        return deployed, ready, Phase.DEPLOYING
    return deployed, _condition(READY, False, ROLLING_OUT, message, g), Phase.DEPLOYING


def serving_failure(new: Mapping[str, Any]) -> Obj | None:
    """The Ready condition when it says serving is stuck (a pod's or the Deployment's cause), else None."""
    for condition in new.get("conditions") or ():
        if condition["type"] == READY and condition["reason"] not in (
            WAITING_FOR_ARTIFACT,
            ROLLING_OUT,
            AVAILABLE,
        ):
            return condition
    return None


def _engine_status(engine: Engine) -> Obj:
    rendered = {
        "uri": engine.uri,
        "precision": engine.precision,
        "backend": engine.backend,
        "variant": engine.variant,
        "sizeBytes": engine.size_bytes,
    }
    if engine.gpu_arch:
        rendered["gpuArch"] = engine.gpu_arch
    if engine.gpu_product:
        rendered["gpuProduct"] = engine.gpu_product
    if engine.tensorrt_version:
        rendered["tensorrtVersion"] = engine.tensorrt_version
    if engine.cpu_isa:
        rendered["cpuIsa"] = engine.cpu_isa
    return rendered


# Status fields that only some states have; a status without them must clear them.
OPTIONAL_FIELDS = (
    "cacheKey",
    "buildJob",
    "engine",
    "benchmark",
    "endpoint",
    "replicas",
    "readyReplicas",
    "autoscaler",
)
BENCHMARK_FIELDS = (
    "p50Ms",
    "p95Ms",
    "throughput",
    "speedupVsPytorch",
    "accuracyMetric",
    "accuracyDrop",
    "fp32Score",  # labeled gate metrics only: scores in points
    "variantScore",
    "dropPoints",
    "noisy",
)


def compute_status(seen: Observation, previous: Mapping[str, Any], now: str) -> Obj:
    """The full status; a condition keeps its lastTransitionTime while its status stays the same."""
    build, build_phase = _build_condition(seen)
    deployed, ready, serving_phase = _serving_conditions(seen)
    phase = build_phase or serving_phase
    earlier = {c.get("type"): c for c in previous.get("conditions") or ()}
    conditions = []
    for condition in (build, deployed, ready):
        before = earlier.get(condition["type"], {})
        same = before.get("status") == condition["status"] and before.get("lastTransitionTime")
        conditions.append({**condition, "lastTransitionTime": before["lastTransitionTime"] if same else now})
    status: Obj = {
        "phase": phase.value,
        "message": next((c["message"] for c in conditions if c["status"] != "True"), ready["message"]),
        "observedGeneration": seen.generation,
        "conditions": conditions,
    }
    if seen.key:
        status["cacheKey"] = seen.key
    if seen.job is not None:
        status["buildJob"] = seen.job.name
    if seen.engine is not None:
        status["engine"] = _engine_status(seen.engine)
        benchmark = {k: seen.engine.benchmark[k] for k in BENCHMARK_FIELDS if k in seen.engine.benchmark}
        if benchmark:
            status["benchmark"] = benchmark
    if seen.endpoint and seen.engine is not None:
        status["endpoint"] = seen.endpoint
    if seen.deployment is not None:
        status["replicas"], status["readyReplicas"] = seen.deployment.desired, seen.deployment.ready
    if seen.autoscaler is not None:
        status["autoscaler"] = seen.autoscaler
    return status


def tensorrt_mismatch(engine: Engine, custom_image: str | None, serving_tensorrt: str) -> str | None:
    """Why the serving image cannot load a TensorRT engine, or None.

    A plan loads only in the TensorRT that built it. The operator knows the TensorRT of its own
    Triton image (settings, from versions.SERVING); a custom `serving.image` is the user's to match.
    """
    if engine.backend != "tensorrt" or custom_image or not engine.tensorrt_version:
        return None
    if engine.tensorrt_version == serving_tensorrt:
        return None
    return (
        f"the engine was built with TensorRT {engine.tensorrt_version} but the Triton image serves "
        f"TensorRT {serving_tensorrt}, which cannot load it; the Deployment is left as it was. Build "
        f"with a builder image of TensorRT {serving_tensorrt} (spec.build.image), or set spec.serving.image "
        f"to a Triton with TensorRT {engine.tensorrt_version}"
    )


def waiting_for_storage(new: Mapping[str, Any]) -> bool:
    """Whether the status says storage could not be read (the caller retries with a growing delay)."""
    return any(
        c["type"] == BUILD_SUCCEEDED and c["reason"] == STORAGE_UNAVAILABLE
        for c in new.get("conditions") or ()
    )


def status_changed(previous: Mapping[str, Any], new: Obj) -> bool:
    """Whether writing `new` changes anything we own (other writers' fields are ignored)."""
    return any(previous.get(key) != value for key, value in new.items()) or any(
        key in previous for key in OPTIONAL_FIELDS if key not in new
    )


def status_patch(previous: Mapping[str, Any], new: Obj) -> Obj:
    """A merge patch from `previous` to `new`: fields that no longer apply are removed (null),
    inside objects too (a merge patch merges objects, so e.g. a withheld noisy
    benchmark.speedupVsPytorch must be nulled or the old value stays)."""
    patch: Obj = {}
    for key, value in new.items():
        before = previous.get(key)
        if isinstance(value, dict) and isinstance(before, Mapping):
            value = {**{k: None for k in before if k not in value}, **value}
        patch[key] = value
    return {**patch, **{key: None for key in OPTIONAL_FIELDS if key in previous and key not in new}}


def job_state(job: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> JobState:
    """What a build Job says: running, succeeded with the builder's result, or failed with its message."""
    name = job["metadata"]["name"]
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"}
    result = _builder_result(pods)
    duration = _duration(status)
    if "Complete" in conditions:
        return JobState(name, JobPhase.SUCCEEDED, "", BUILD_COMPLETE, duration, result)
    if "Failed" in conditions:
        failed = conditions["Failed"]
        if result.get("status") == "failed":
            message = f"{result.get('reason', 'BuildFailed')}: {result.get('message', '')}".strip()
        else:
            message = (
                f"Job {name} failed ({failed.get('reason', 'Failed')}): {failed.get('message', '')}".strip()
            )
        return JobState(name, JobPhase.FAILED, message, failed.get("reason", "Failed"), duration, result)
    active, failures = status.get("active", 0), status.get("failed", 0)
    message = f"Job {name}: {active} pod(s) running" + (f", {failures} failed attempt(s)" if failures else "")
    return JobState(name, JobPhase.RUNNING, message, BUILD_RUNNING)


def _builder_result(pods: list[Mapping[str, Any]]) -> Obj:
    """The newest builder's JSON result from its termination message, if any pod has one."""
    results = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or ():
            terminated = (container.get("state") or {}).get("terminated") or {}
            if container.get("name") == "builder" and terminated.get("message"):
                results.append((terminated.get("finishedAt") or "", terminated["message"]))
    for _, message in sorted(results, reverse=True):
        try:
            parsed = json.loads(message)
        except ValueError:  # FallbackToLogsOnError: the log's tail, not JSON
            return {"status": "failed", "reason": "BuildFailed", "message": message.strip()[-1000:]}
        if isinstance(parsed, dict):
            return parsed
    return {}


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _duration(status: Mapping[str, Any]) -> float | None:
    """Start to completion, or to the failure (a failed Job has no completionTime)."""
    failed = [
        c for c in status.get("conditions") or () if c.get("type") == "Failed" and c.get("status") == "True"
    ]
    start = status.get("startTime")
    end = status.get("completionTime") or (failed[0].get("lastTransitionTime") if failed else None)
    if not start or not end:
        return None
    return (_timestamp(end) - _timestamp(start)).total_seconds()


def deployment_state(deployment: Mapping[str, Any]) -> DeploymentState:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    available = any(
        c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or ()
    )
    return DeploymentState(
        desired=spec.get("replicas", 1),
        ready=status.get("readyReplicas", 0),
        updated=status.get("updatedReplicas", 0),
        available=available,
        current=status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0),
    )


def serving_problem(deployment: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> ServingProblem | None:
    """The first serving pod that says why it is not ready (by name, so the answer is stable), else the
    Deployment's ProgressDeadlineExceeded, else None (still on its way).

    A pod says why when it cannot be scheduled (PodScheduled=False, Unschedulable), when one of its
    containers waits for a reason no waiting fixes (CrashLoopBackOff, ImagePullBackOff, ...), or when
    one has exited non-zero; the message carries the end of the last termination message, which for
    Triton (terminationMessagePolicy FallbackToLogsOnError) is its last log lines.
    """
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        found = _pod_problem(pod)
        if found is not None:
            return found
    for condition in (deployment.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Progressing" and condition.get("reason") == PROGRESS_DEADLINE_EXCEEDED:
            return ServingProblem(PROGRESS_DEADLINE_EXCEEDED, condition.get("message", ""))
    return None


def _pod_problem(pod: Mapping[str, Any]) -> ServingProblem | None:
    name, status = pod["metadata"]["name"], pod.get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("reason") == UNSCHEDULABLE:
            return ServingProblem(UNSCHEDULABLE, f"pod {name}: {condition.get('message', '')}".strip())
    for container in [*status.get("initContainerStatuses", ()), *status.get("containerStatuses", ())]:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        where = f"pod {name}, container {container.get('name')}"
        if waiting.get("reason") in STUCK_WAITING_REASONS:
            last = ((container.get("lastState") or {}).get("terminated")) or {}
            detail = _exited(last) or waiting.get("message", "")
            return ServingProblem(waiting["reason"], f"{where}: {waiting['reason']}: {detail}".strip())
        if terminated.get("exitCode", 0) != 0:
            reason = "OOMKilled" if terminated.get("reason") == "OOMKilled" else CONTAINER_FAILED
            return ServingProblem(reason, f"{where}: {_exited(terminated)}")
    return None


def _exited(terminated: Mapping[str, Any]) -> str:
    """ "exit code 1 (Error): <the end of the termination message>", or "" when it never ran."""
    if not terminated:
        return ""
    text = f"exit code {terminated.get('exitCode')} ({terminated.get('reason', 'Error')})"
    message = (terminated.get("message") or "").strip()
    return f"{text}: {message[-TERMINATION_MESSAGE_CHARS:]}" if message else text


def endpoint(name: str, namespace: str) -> Obj:
    host = f"{name}.{namespace}.svc"
    return {"http": f"http://{host}:8000", "grpc": f"{host}:8001", "metrics": f"http://{host}:8002/metrics"}
