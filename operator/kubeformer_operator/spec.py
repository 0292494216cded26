"""The OptimizedTransformer spec as frozen dataclasses, parsed once where kopf hands it over.

The CRD schema already refuses malformed objects and fills in defaults; the engine-changing part is
read through the builder's table of build settings (build_fields.py, which also holds the defaults
for objects stored before a CRD default existed) into the builder's own `BuildConfig`, so the
operator and the builder validate with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeformer_builder.build_fields import values_from_spec
from kubeformer_builder.config import Backend, BuildConfig, parse_build_config
from kubeformer_builder.errors import ConfigError

Raw = Mapping[str, Any]


class SpecError(ValueError):
    """A spec the builder would refuse; the message names every bad field."""


@dataclass(frozen=True)
class Storage:
    uri: str
    endpoint: str | None = None
    region: str | None = None
    secret_ref: str | None = None
    delete_on_removal: bool = False


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int = 1
    max_replicas: int = 4
    target_cpu_percent: int = 80
    target_queue_us: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where and with what a pod runs: resources, nodeSelector and tolerations, as Kubernetes dicts."""

    resources: dict[str, Any] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class PodOverlay:
    """What a cluster requires of the pods (serving.pod, build.pod), as Kubernetes dicts: added to the
    rendered pod template, never replacing what the operator itself sets."""

    service_account: str | None = None
    image_pull_secrets: tuple[dict[str, str], ...] = ()
    priority_class: str | None = None
    runtime_class: str | None = None
    affinity: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    env: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Serving:
    replicas: int = 1
    image: str | None = None
    instances: int = 1
    autoscaling: Autoscaling | None = None
    max_queue_delay_us: int = 1000
    preferred_batch_sizes: tuple[int, ...] = ()
    placement: Placement = field(default_factory=Placement)
    pod: PodOverlay = field(default_factory=PodOverlay)
    api: bool = True  # the client API front (serving.api.enabled) beside Triton


@dataclass(frozen=True)
class BuildSettings:
    image: str | None = None
    backoff_limit: int = 1
    active_deadline_seconds: int = 7200
    placement: Placement = field(default_factory=Placement)
    pod: PodOverlay = field(default_factory=PodOverlay)


@dataclass(frozen=True)
class TransformerSpec:
    """Everything an OptimizedTransformer asks for; `engine` is exactly what the builder gets."""

    engine: BuildConfig
    credentials_secret: str | None
    storage: Storage
    serving: Serving
    build: BuildSettings

    @property
    def needs_gpu(self) -> bool:
        return self.engine.backend is Backend.TENSORRT


def _placement(raw: Raw) -> Placement:
    return Placement(
        resources=dict(raw.get("resources") or {}),
        node_selector=dict(raw.get("nodeSelector") or {}),
        tolerations=tuple(dict(t) for t in raw.get("tolerations") or ()),
    )


def _pod_overlay(raw: Raw) -> PodOverlay:
    return PodOverlay(
        service_account=raw.get("serviceAccountName"),
        image_pull_secrets=tuple(dict(s) for s in raw.get("imagePullSecrets") or ()),
        priority_class=raw.get("priorityClassName"),
        runtime_class=raw.get("runtimeClassName"),
        affinity=dict(raw.get("affinity") or {}),
        labels=dict(raw.get("labels") or {}),
        annotations=dict(raw.get("annotations") or {}),
        env=tuple(dict(e) for e in raw.get("env") or ()),
    )


def parse_spec(raw: Raw, name: str) -> TransformerSpec:
    """Raw `spec` of the object named `name` into a TransformerSpec, or SpecError listing every problem."""
    model, storage = raw.get("model") or {}, raw.get("storage") or {}
    problems = [] if storage.get("uri") else ["spec.storage.uri: required"]
    try:
        engine = parse_build_config(**values_from_spec(raw), name=name.replace(".", "-"))
    except ConfigError as error:
        problems += [f"spec.{problem}" for problem in str(error).split("; ")]
    if problems:
        raise SpecError("; ".join(problems))
    return TransformerSpec(
        engine=engine,
        credentials_secret=model.get("credentialsSecret"),
        storage=_parse_storage(storage),
        serving=_parse_serving(raw.get("serving") or {}),
        build=_parse_build(raw.get("build") or {}),
    )


def _parse_storage(raw: Raw) -> Storage:
    return Storage(
        uri=raw["uri"].rstrip("/"),
        endpoint=raw.get("endpoint"),
        region=raw.get("region"),
        secret_ref=raw.get("secretRef"),
        delete_on_removal=bool(raw.get("deleteOnRemoval", False)),
    )


def _parse_serving(raw: Raw) -> Serving:
    scaling, batching = raw.get("autoscaling"), raw.get("dynamicBatching") or {}
    return Serving(
        replicas=raw.get("replicas", 1),
        image=raw.get("image"),
        instances=raw.get("instancesPerReplica", 1),
        autoscaling=None
        if scaling is None
        else Autoscaling(
            min_replicas=scaling.get("minReplicas", 1),
            max_replicas=scaling.get("maxReplicas", 4),
            target_cpu_percent=scaling.get("targetCPUUtilizationPercentage", 80),
            target_queue_us=scaling.get("targetQueueMicroseconds"),
        ),
        max_queue_delay_us=batching.get("maxQueueDelayMicroseconds", 1000),
        preferred_batch_sizes=tuple(batching.get("preferredBatchSizes") or ()),
        placement=_placement(raw),
        pod=_pod_overlay(raw.get("pod") or {}),
        api=bool((raw.get("api") or {}).get("enabled", True)),
    )


def _parse_build(raw: Raw) -> BuildSettings:
    return BuildSettings(
        image=raw.get("image"),
        backoff_limit=raw.get("backoffLimit", 1),
        active_deadline_seconds=raw.get("activeDeadlineSeconds", 7200),
        placement=_placement(raw),
        pod=_pod_overlay(raw.get("pod") or {}),
    )
