"""The kopf handlers: thin entry points that find the object and hand it to `reconcile`.

Every trigger (the object changed, its build Job or Deployment changed, the slow safety-net timer)
runs the same idempotent reconcile under a per-object lock, on a fresh read of the object, so
concurrent triggers never write a status computed from an older view than the last one written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf
import kubernetes

from kubeformer_builder.errors import KubeformerError
from kubeformer_operator import artifacts, metrics, names, status
from kubeformer_operator.reconcile import Context, load_credentials, reconcile, record
from kubeformer_operator.spec import SpecError, parse_spec

Obj = dict[str, Any]
log = logging.getLogger("kubeformer.operator")
RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
MAX_BACKOFF_SECONDS = 300


class ObjectLocks:
    """One lock per object: triggers of the same object take turns, different objects run in parallel."""

    def __init__(self) -> None:
        self._guard, self._locks = threading.Lock(), {}

    @contextmanager
    def hold(self, namespace: str, name: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault((namespace, name), threading.Lock())
        with lock:
            yield

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)


def reconcile_object(ctx: Context, locks: ObjectLocks, namespace: str, name: str) -> Obj | None:
    """Reconcile one object from a fresh read and write its status when it changed; None if gone."""
    with locks.hold(namespace, name), metrics.RECONCILE_SECONDS.time():
        body = ctx.kube.get(names.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        new, seen = reconcile(body, ctx)
        previous = body.get("status") or {}
        if status.status_changed(previous, new):
            patch = {"status": status.status_patch(previous, new)}
            ctx.kube.merge_patch(names.KIND, namespace, name, patch, subresource="status")
            announce(body, previous, new)
        record(body, previous, new, seen.job)
        return new


def announce(body: Obj, previous: Obj, new: Obj) -> None:
    """A Kubernetes Event when the phase changes, with the condition's own message; a Warning when the
    serving pods get stuck for a new reason (CrashLoopBackOff, ImagePullBackOff, Unschedulable, ...)."""
    stuck, stuck_before = status.serving_failure(new), status.serving_failure(previous)
    if stuck and (stuck_before or {}).get("reason") != stuck["reason"]:
        kopf.event(body, type="Warning", reason=stuck["reason"], message=stuck["message"][:1024])
    phase = new.get("phase")
    if phase == previous.get("phase") and new.get("cacheKey") == previous.get("cacheKey"):
        return
    failing = next((c for c in new.get("conditions", ()) if c["status"] != "True"), None)
    reason = failing["reason"] if failing else status.AVAILABLE
    kind = "Warning" if phase == status.Phase.FAILED.value else "Normal"
    kopf.event(body, type=kind, reason=reason, message=f"{phase}: {new.get('message', '')}"[:1024])


def register(registry: kopf.OperatorRegistry, ctx: Context) -> ObjectLocks:
    """Register every handler on `registry` (no import-time side effects); returns the object locks."""
    locks = ObjectLocks()

    def on_change_transformer(namespace: str, name: str, retry: int, **_: Any) -> None:
        try:
            new = reconcile_object(ctx, locks, namespace, name)
        except kubernetes.client.ApiException as error:
            raise kopf.TemporaryError(f"Kubernetes API: {error.status} {error.reason}", delay=10) from error
        if new and status.waiting_for_storage(new):
            # Storage is down or refused us: try again with a growing delay, the cause is in the status.
            raise kopf.TemporaryError(new["message"], delay=min(MAX_BACKOFF_SECONDS, 10 * 2**retry))

    for trigger in (kopf.on.create, kopf.on.update, kopf.on.resume):
        trigger(*RESOURCE, registry=registry, id="reconcile", retries=20)(on_change_transformer)

    def on_timer(namespace: str, name: str, **_: Any) -> None:
        """Returns nothing: kopf would write a handler's return value into the status on every tick."""
        reconcile_object(ctx, locks, namespace, name)

    kopf.timer(
        *RESOURCE,
        registry=registry,
        id="safety-net",
        interval=ctx.settings.requeue_seconds,
        idle=ctx.settings.requeue_seconds,
    )(on_timer)

    def on_event_child(namespace: str, labels: dict, type: str | None, **_: Any) -> None:
        owner = labels.get(names.TRANSFORMER)
        if owner and type is not None:  # None: the initial listing, which the resume handler covers
            try:
                reconcile_object(ctx, locks, namespace, owner)
            except (kubernetes.client.ApiException, KubeformerError) as error:
                log.warning("reconcile of %s/%s after a child event failed: %s", namespace, owner, error)

    for group, version, plural in (("batch", "v1", "jobs"), ("apps", "v1", "deployments")):
        kopf.on.event(group, version, plural, registry=registry, labels=names.OWNED)(on_event_child)
    # Serving pods: a crash loop or a failed image pull shows on the pod, not on its Deployment.
    serving_pods = {**names.OWNED, names.COMPONENT: "triton"}
    kopf.on.event("", "v1", "pods", registry=registry, labels=serving_pods)(on_event_child)

    def on_delete_transformer(spec: Any, namespace: str, name: str, **_: Any) -> None:
        """Only registered as needing a finalizer while deleteOnRemoval is true (see `when`)."""
        try:
            parsed = parse_spec(dict(spec), name)
        except SpecError:
            return  # never built anything
        prefix = names.artifact_prefix(parsed.storage.uri, namespace, name)
        try:
            credentials = load_credentials(ctx.kube, namespace, parsed.storage.secret_ref)
            artifacts.delete_artifacts(prefix, parsed.storage.endpoint, credentials)
        except KubeformerError as error:
            raise kopf.TemporaryError(f"deleting artifacts at {prefix}: {error}", delay=30) from error
        log.info("deleted the artifacts of %s/%s at %s", namespace, name, prefix)

    kopf.on.delete(
        *RESOURCE,
        registry=registry,
        id="artifacts",
        retries=10,
        when=lambda spec, **_: bool((spec.get("storage") or {}).get("deleteOnRemoval")),
    )(on_delete_transformer)

    def on_delete_forget(namespace: str, name: str, **_: Any) -> None:
        """Every deleted object, finalizer or not: drop its lock and its phase from the gauge."""
        locks.forget(namespace, name)
        metrics.set_phase(namespace, name, None)

    kopf.on.delete(*RESOURCE, registry=registry, id="forget", optional=True)(on_delete_forget)
    return locks
