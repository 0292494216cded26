"""Every Prometheus metric of the operator, behind a few functions; served on :8080/metrics."""

from __future__ import annotations

import threading
from collections import Counter as Tally

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

RECONCILE_SECONDS = Histogram(
    "kubeformer_reconcile_duration_seconds",
    "Time to reconcile one OptimizedTransformer (read, decide, render, apply, status).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BUILDS = Counter("kubeformer_builds_total", "Build Jobs that finished, by result.", ["result"])
BUILD_SECONDS = Histogram(
    "kubeformer_build_duration_seconds",
    "Build Job duration from start to completion or failure.",
    buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
CACHE_HITS = Counter(
    "kubeformer_cache_hits_total", "Objects served from an existing artifact without a build."
)
JOBS_CREATED = Counter("kubeformer_build_jobs_created_total", "Build Jobs the operator created.")
OBJECTS = Gauge("kubeformer_objects", "OptimizedTransformer objects by phase.", ["phase"])
API_REQUESTS = Counter(
    "kubeformer_api_requests_total", "Kubernetes API requests the operator made.", ["verb"]
)

PHASES = ("Pending", "Building", "Deploying", "Ready", "Failed")
_phases: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)


def api_request(verb: str) -> None:
    API_REQUESTS.labels(verb=verb).inc()


def build_finished(result: str, seconds: float | None) -> None:
    BUILDS.labels(result=result).inc()
    if seconds is not None:
        BUILD_SECONDS.observe(seconds)


def cache_hit() -> None:
    CACHE_HITS.inc()


def job_created() -> None:
    JOBS_CREATED.inc()


def set_phase(namespace: str, name: str, phase: str | None) -> None:
    """Record an object's phase (None: it is gone) and refresh the per-phase gauge."""
    with _lock:
        if phase is None:
            _phases.pop((namespace, name), None)
        else:
            _phases[(namespace, name)] = phase
        counts = Tally(_phases.values())
        for known in PHASES:
            OBJECTS.labels(phase=known).set(counts.get(known, 0))
