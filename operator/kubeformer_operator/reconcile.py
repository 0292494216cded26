"""One reconcile of one OptimizedTransformer: observe, act, and return the status to write.

cacheKey → a complete artifact? (skip the build) → else create or adopt the build Job named after
the key (never two for one key) → when an engine exists, apply the serving objects → status from
what was seen. Every step is idempotent, so a restarted operator or a repeated event converges to
the same objects.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import kubernetes

from kubeformer_builder.errors import KubeformerError
from kubeformer_builder.storage import Credentials
from kubeformer_operator import artifacts, drift, metrics, names, render, status
from kubeformer_operator.config import Settings
from kubeformer_operator.keys import engine_key
from kubeformer_operator.kube import Kube
from kubeformer_operator.spec import SpecError, TransformerSpec, parse_spec
from kubeformer_operator.status import Engine, JobPhase, JobState, Observation

Obj = dict[str, Any]
log = logging.getLogger("kubeformer.operator")


@dataclass(frozen=True)
class Context:
    """What every reconcile needs, made once at startup."""

    kube: Kube
    settings: Settings
    keda: bool = False
    service_monitor: bool = False


NO_AUTOSCALER = "none"


class CredentialsError(KubeformerError):
    reason = "CredentialsMissing"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(body: Obj, ctx: Context) -> tuple[Obj, Observation]:
    """The new status of `body` after bringing its children in line with its spec, and what was seen."""
    meta, previous = body["metadata"], body.get("status") or {}
    name, namespace, generation = meta["name"], meta["namespace"], meta.get("generation", 1)
    try:
        spec = parse_spec(body.get("spec") or {}, name)
    except SpecError as error:
        seen = Observation(generation, spec_error=str(error))
        return status.compute_status(seen, previous, now()), seen
    key = engine_key(spec, ctx.settings)
    target = render.Target(name, namespace, key, names.artifact_uri(spec.storage.uri, namespace, name, key))
    seen = observe_engine(spec, target, body, ctx, Observation(generation, key))
    engine = seen.engine
    refused = engine and status.tensorrt_mismatch(engine, spec.serving.image, ctx.settings.triton_tensorrt)
    if refused:
        seen = replace(seen, serving_error=refused)
    elif engine is not None:
        gpu = render.EngineGpu.parse(engine.gpu_arch, engine.gpu_product)
        deployment, problem, autoscaler = ensure_serving(spec, target, body, ctx, gpu)
        seen = replace(
            seen,
            deployment=deployment,
            serving_problem=problem,
            autoscaler=autoscaler,
            endpoint=status.endpoint(name, namespace),
        )
    return status.compute_status(seen, previous, now()), seen


def observe_engine(
    spec: TransformerSpec, target: render.Target, body: Obj, ctx: Context, seen: Observation
) -> Observation:
    """The engine for the key (from the status when already recorded, else storage), or its build Job."""
    previous = body.get("status") or {}
    if previous.get("cacheKey") == target.key and previous.get("engine"):
        # Artifacts are immutable per key: no storage round trip once the status holds one.
        job = previous.get("buildJob")
        built_by = JobState(job, JobPhase.SUCCEEDED, reason=status.BUILD_COMPLETE) if job else None
        return replace(seen, engine=engine_from_status(previous), job=built_by)
    try:
        credentials = load_credentials(ctx.kube, target.namespace, spec.storage.secret_ref)
        engine = artifacts.find_engine(target.artifact_uri, spec.storage.endpoint, credentials)
    except KubeformerError as error:
        return replace(seen, storage_error=str(error))
    job = ctx.kube.get("Job", target.namespace, names.build_job_name(target.name, target.key))
    if engine is None and job is None:
        job = ensure_job(spec, target, body, ctx)
    job_seen = None if job is None else read_job(ctx.kube, job)
    if engine is not None and job_seen is None:
        metrics.cache_hit()
    return replace(seen, engine=engine, job=job_seen)


def engine_from_status(previous: Obj) -> Engine:
    recorded = previous["engine"]
    return Engine(
        uri=recorded["uri"],
        precision=recorded.get("precision", ""),
        backend=recorded.get("backend", ""),
        variant=recorded.get("variant", ""),
        size_bytes=recorded.get("sizeBytes", 0),
        gpu_arch=recorded.get("gpuArch"),
        gpu_product=recorded.get("gpuProduct"),
        tensorrt_version=recorded.get("tensorrtVersion"),
        cpu_isa=recorded.get("cpuIsa"),
        benchmark=dict(previous.get("benchmark") or {}),
    )


def load_credentials(kube: Kube, namespace: str, secret_name: str | None) -> Credentials | None:
    """S3 keys from the storage Secret; None lets boto3 use the operator's own identity."""
    if not secret_name:
        return None
    secret = kube.get("Secret", namespace, secret_name)
    if secret is None:
        raise CredentialsError(f"spec.storage.secretRef: Secret {namespace}/{secret_name} does not exist")
    data = secret.get("data") or {}
    missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k not in data]
    if missing:
        raise CredentialsError(
            f"spec.storage.secretRef: Secret {namespace}/{secret_name} lacks {' and '.join(missing)}"
        )
    decode = lambda key: base64.b64decode(data[key]).decode()  # noqa: E731
    return Credentials(decode("AWS_ACCESS_KEY_ID"), decode("AWS_SECRET_ACCESS_KEY"))


def ensure_job(spec: TransformerSpec, target: render.Target, body: Obj, ctx: Context) -> Obj:
    """Create the build Job; if it appeared meanwhile (another reconcile, a restart), use that one."""
    job = render.owned_by(render.render_build_job(spec, target, ctx.settings), body)
    try:
        created = ctx.kube.create(job)
    except kubernetes.client.ApiException as error:
        if error.status != 409:
            raise
        existing = ctx.kube.get("Job", target.namespace, job["metadata"]["name"])
        return existing if existing is not None else job
    metrics.job_created()
    log.info("created build Job %s/%s", target.namespace, job["metadata"]["name"])
    return created


def read_job(kube: Kube, job: Obj) -> JobState:
    """The Job's state; its pods (for the builder's termination message) only once it finished."""
    state = status.job_state(job, [])
    if state.phase is JobPhase.RUNNING:
        return state
    pods = kube.list("Pod", job["metadata"]["namespace"], {"batch.kubernetes.io/job-name": state.name})
    return status.job_state(job, pods)


def autoscaler(spec: TransformerSpec, target: render.Target, ctx: Context) -> Obj | None:
    """A KEDA ScaledObject on queue time where KEDA and Prometheus are there, else a CPU HPA, or none."""
    scaling = spec.serving.autoscaling
    if scaling is None:
        return None
    if ctx.keda and scaling.target_queue_us and ctx.settings.prometheus_url:
        return render.render_scaled_object(
            scaling, scaling.target_queue_us, target, ctx.settings.prometheus_url, spec.engine.name
        )
    return render.render_hpa(scaling, target)


def ensure_serving(
    spec: TransformerSpec,
    target: render.Target,
    body: Obj,
    ctx: Context,
    gpu: render.EngineGpu | None = None,
) -> tuple[status.DeploymentState, status.ServingProblem | None, str]:
    """Apply Deployment, Service, autoscaler and ServiceMonitor, all owned by the custom resource.

    Returns the Deployment's state, why its pods are stuck (read from them only while it is not rolled
    out) and the autoscaler kind now in place ("none" when there is none); the status remembers the
    kind so that a previous autoscaler of another kind is deleted exactly once.
    """
    scaler = autoscaler(spec, target, ctx)
    children = [render.render_service(target, spec.serving.api), *([scaler] if scaler else [])]
    if ctx.service_monitor:
        children.append(render.render_service_monitor(target, ctx.settings.monitor_labels, spec.serving.api))
    deployment = apply_changed(
        ctx, render.owned_by(render.render_deployment(spec, target, ctx.settings, gpu), body)
    )
    for child in children:
        apply_changed(ctx, render.owned_by(child, body))
    kind = scaler["kind"] if scaler else NO_AUTOSCALER
    before = (body.get("status") or {}).get("autoscaler")
    if before and before not in (kind, NO_AUTOSCALER):
        ctx.kube.delete(before, target.namespace, target.name)
    state = status.deployment_state(deployment)
    problem = None
    if not state.rolled_out:
        pods = ctx.kube.list("Pod", target.namespace, names.selector(target.name))
        problem = status.serving_problem(deployment, pods)
    return state, problem, kind


def apply_changed(ctx: Context, child: Obj) -> Obj:
    """The live child, applied first only when it differs from `child` in what the operator owns
    (drift.py): a quiet object costs reads, not writes."""
    meta = child["metadata"]
    live = ctx.kube.get(child["kind"], meta["namespace"], meta["name"])
    if drift.needs_apply(child, live, ctx.settings.field_manager):
        return ctx.kube.apply(child)
    return live


def record(body: Obj, previous: Obj, new: Obj, seen_job: JobState | None) -> None:
    """Metrics for what changed between two statuses (a build finishes once, not once per reconcile)."""
    meta = body["metadata"]
    metrics.set_phase(meta["namespace"], meta["name"], new.get("phase"))
    before = {c["type"]: c for c in previous.get("conditions") or ()}.get(status.BUILD_SUCCEEDED, {})
    after = {c["type"]: c for c in new.get("conditions") or ()}.get(status.BUILD_SUCCEEDED, {})
    if before.get("reason") != status.BUILD_RUNNING or seen_job is None:
        return
    outcomes = {status.BUILD_COMPLETE: "succeeded", status.BUILD_FAILED: "failed"}
    if after.get("reason") in outcomes:
        metrics.build_finished(outcomes[after["reason"]], seen_job.duration_seconds)
