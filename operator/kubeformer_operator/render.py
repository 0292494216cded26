"""Pure renderers: (spec, names, settings) in, Kubernetes object dicts out. No I/O, no clock, no env.

Every pod passes the `restricted` Pod Security level: non-root, no privilege escalation, all
capabilities dropped, the runtime's seccomp profile, a read-only root filesystem with emptyDirs
where a process must write. Credentials reach containers only as secretKeyRef environment, never
as arguments or in rendered text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity

from kubeformer_builder.build_fields import build_arguments
from kubeformer_builder.config import BuildConfig
from kubeformer_operator import names
from kubeformer_operator.config import Settings
from kubeformer_operator.spec import Autoscaling, Placement, PodOverlay, TransformerSpec

Obj = dict[str, Any]

GPU_RESOURCE = "nvidia.com/gpu"
# Every NVIDIA device-plugin resource is a GPU or a slice of one: nvidia.com/gpu, nvidia.com/mig-1g.10gb, ...
GPU_RESOURCE_PREFIX = "nvidia.com/"
# GPU feature discovery's node labels (NVIDIA GPU Operator / k8s-device-plugin).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MAJOR_LABEL, GPU_MINOR_LABEL = "nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor"
NON_ROOT_UID = 65532
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
API_PORT = 8080  # the client API front (kubeformer api): OpenAI /v1/embeddings, /embed, /predict, /metrics
MODELS_DIR = "/models"
ARTIFACT_DIR = f"{MODELS_DIR}/artifact"
# Builder exit codes that no retry can fix (kubeformer_builder.errors): a bad spec, an unsupported
# model, a failed accuracy gate, an invalid artifact, a missing backend. The Job fails at once.
PERMANENT_EXIT_CODES = (2, 4, 6, 7, 8)
DEFAULT_TRITON_REQUESTS = {"cpu": "1", "memory": "2Gi"}
DEFAULT_API_REQUESTS = {"cpu": "250m", "memory": "256Mi"}
DEFAULT_BUILD_REQUESTS = {"cpu": "2", "memory": "8Gi"}


@dataclass(frozen=True)
class Target:
    """Who the children belong to and where the artifact lives."""

    name: str
    namespace: str
    key: str
    artifact_uri: str


@dataclass(frozen=True)
class EngineGpu:
    """The GPU a TensorRT engine was built on (manifest versions gpu_arch and gpu_product)."""

    major: int
    minor: int
    product: str | None = None

    @classmethod
    def parse(cls, arch: str | None, product: str | None) -> EngineGpu | None:
        """From 'sm_90' (major 9, minor 0) or 'sm_120'; None when the engine names no GPU."""
        match = re.fullmatch(r"sm_(\d+)(\d)", arch or "")
        return cls(int(match.group(1)), int(match.group(2)), product) if match else None

    @property
    def product_label(self) -> str | None:
        """The product as GPU feature discovery labels it ('NVIDIA H200' -> 'NVIDIA-H200')."""
        if not self.product:
            return None
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.product).strip("-_.")[:63] or None


def gpu_affinity(gpu: EngineGpu) -> Obj:
    """Only nodes whose GPUs have the engine's compute capability (a plan loads on no other); among
    them, nodes of the very product it was built on first (MIG and shared GPUs change that label)."""
    required = [
        {"key": GPU_MAJOR_LABEL, "operator": "In", "values": [str(gpu.major)]},
        {"key": GPU_MINOR_LABEL, "operator": "In", "values": [str(gpu.minor)]},
    ]
    affinity: Obj = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": required}]
        }
    }
    if gpu.product_label:
        product = {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [gpu.product_label]}
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": 100, "preference": {"matchExpressions": [product]}}
        ]
    return {"nodeAffinity": affinity}


def builder_args(config: BuildConfig, output: str) -> list[str]:
    """`kubeformer build` arguments that parse back into exactly `config` (tested round-trip)."""
    return ["build", *build_arguments(config), f"--output={output}"]


def restricted_container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def secret_env(variable: str, secret: str, key: str, optional: bool = False) -> Obj:
    ref: Obj = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": variable, "valueFrom": {"secretKeyRef": ref}}


def storage_env(spec: TransformerSpec) -> list[Obj]:
    """storage.region, and the storage.secretRef keys; without a Secret, the node's or the service
    account's own identity (IRSA, workload identity) in that region."""
    env = [{"name": "AWS_REGION", "value": spec.storage.region}] if spec.storage.region else []
    secret = spec.storage.secret_ref
    if secret:
        env += [
            secret_env("AWS_ACCESS_KEY_ID", secret, "AWS_ACCESS_KEY_ID"),
            secret_env("AWS_SECRET_ACCESS_KEY", secret, "AWS_SECRET_ACCESS_KEY"),
        ]
    return env


def source_env(secret: str) -> list[Obj]:
    """model.credentialsSecret: HF_TOKEN for hf:// sources, S3 keys for s3:// ones (separate from the
    artifact storage's, see storage.source_credentials); every key optional, a Secret holds what its
    source needs."""
    return [
        secret_env("HF_TOKEN", secret, "HF_TOKEN", optional=True),
        secret_env("KUBEFORMER_SOURCE_AWS_ACCESS_KEY_ID", secret, "AWS_ACCESS_KEY_ID", optional=True),
        secret_env("KUBEFORMER_SOURCE_AWS_SECRET_ACCESS_KEY", secret, "AWS_SECRET_ACCESS_KEY", optional=True),
    ]


def gpu_resources(placement: Placement) -> set[str]:
    """The NVIDIA resources (whole GPUs, MIG slices) a placement asks for."""
    asked = {**placement.resources.get("requests", {}), **placement.resources.get("limits", {})}
    return {name for name in asked if name.startswith(GPU_RESOURCE_PREFIX)}


def resources(placement: Placement, defaults: dict[str, str], gpu: bool) -> Obj:
    """The spec's resources, default requests when it gives none, one GPU when the backend needs it
    and the spec asks for none (a MIG slice it asks for is its GPU)."""
    requests = dict(placement.resources.get("requests") or defaults)
    limits = dict(placement.resources.get("limits") or {})
    if gpu and not gpu_resources(placement):
        limits[GPU_RESOURCE] = 1
    rendered: Obj = {"requests": requests}
    if limits:
        rendered["limits"] = limits
    return rendered


def _scheduling(placement: Placement) -> Obj:
    rendered: Obj = {}
    if placement.node_selector:
        rendered["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        rendered["tolerations"] = [dict(t) for t in placement.tolerations]
    return rendered


def add_pod_overlay(template: Obj, overlay: PodOverlay) -> None:
    """Add to `template` (a pod template) what the cluster requires of its pods: service account, pull
    secrets, priority and runtime class, affinity, labels, annotations and env of every container.
    What the operator sets wins: its labels (the selector), annotations, env (credentials) and node
    affinity (placement) are never replaced."""
    spec, metadata = template["spec"], template["metadata"]
    fields = {
        "serviceAccountName": overlay.service_account,
        "imagePullSecrets": [dict(s) for s in overlay.image_pull_secrets],
        "priorityClassName": overlay.priority_class,
        "runtimeClassName": overlay.runtime_class,
    }
    spec.update({key: value for key, value in fields.items() if value})
    if overlay.affinity:
        spec["affinity"] = {**overlay.affinity, **spec.get("affinity", {})}
    metadata["labels"] = {**overlay.labels, **metadata["labels"]}
    metadata["annotations"] = {**overlay.annotations, **metadata["annotations"]}
    for container in [*spec.get("initContainers", ()), *spec["containers"]]:
        taken = {e["name"] for e in container.get("env", ())}
        container["env"] = [
            *container.get("env", ()),
            *(dict(e) for e in overlay.env if e["name"] not in taken),
        ]


def _serving_object(api_version: str, kind: str, target: Target, spec: Obj) -> Obj:
    """A serving child named like its parent, labelled to select the Triton pods."""
    metadata = _metadata(target, target.name, "triton")
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}


def _metadata(target: Target, name: str, component: str) -> Obj:
    return {
        "name": name,
        "namespace": target.namespace,
        "labels": names.labels(target.name, component),
        "annotations": {names.CACHE_KEY: target.key},
    }


def render_build_job(spec: TransformerSpec, target: Target, settings: Settings) -> Obj:
    """The build Job: `kubeformer build` writing the artifact, its JSON result as termination message."""
    env = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HOME", "value": "/tmp/huggingface"},
        *storage_env(spec),
    ]
    if spec.credentials_secret:
        env += source_env(spec.credentials_secret)
    container = {
        "name": "builder",
        "image": spec.build.image or settings.builder_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": builder_args(spec.engine, target.artifact_uri),
        "env": env,
        "resources": resources(spec.build.placement, DEFAULT_BUILD_REQUESTS, spec.needs_gpu),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
    }
    metadata = _metadata(target, names.build_job_name(target.name, target.key), "build")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": spec.build.backoff_limit,
            "activeDeadlineSeconds": spec.build.active_deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "builder",
                            "operator": "In",
                            "values": list(PERMANENT_EXIT_CODES),
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {
                "metadata": {"labels": metadata["labels"], "annotations": metadata["annotations"]},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": restricted_pod_security(),
                    "containers": [container],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    **_scheduling(spec.build.placement),
                },
            },
        },
    }
    add_pod_overlay(job["spec"]["template"], spec.build.pod)
    return job


def uses_gpu(spec: TransformerSpec) -> bool:
    """TensorRT engines need a GPU; an ONNX Runtime engine runs on one when the serving pods ask for
    any NVIDIA resource (a whole GPU or a MIG slice)."""
    return spec.needs_gpu or bool(gpu_resources(spec.serving.placement))


def fetch_args(spec: TransformerSpec, target: Target) -> list[str]:
    """The init container: fetch, verify every sha256, apply the serving fields (no rebuild needed)."""
    serving = spec.serving
    args = [
        "fetch",
        target.artifact_uri,
        ARTIFACT_DIR,
        "--replace",  # a restarted init container finds the previous attempt's files in the emptyDir
        f"--instance-kind={'gpu' if uses_gpu(spec) else 'cpu'}",
        f"--instances={serving.instances}",
        f"--max-queue-delay-us={serving.max_queue_delay_us}",
    ]
    if serving.preferred_batch_sizes:
        args.append(f"--preferred-batch-sizes={','.join(map(str, serving.preferred_batch_sizes))}")
    threads = intra_op_threads(spec)
    if threads is not None:
        args.append(f"--intra-op-threads={threads}")
    if spec.storage.endpoint:
        args.append(f"--s3-endpoint={spec.storage.endpoint}")
    return args


def intra_op_threads(spec: TransformerSpec) -> int | None:
    """ONNX Runtime threads per model instance on CPU: the Triton container's CPUs (its limit, else its
    request) shared by its instances, at least one; None on GPU. ONNX Runtime's own default (0) is one
    thread per host core, which oversubscribes a pod limited to fewer CPUs than the node has.
    """
    if uses_gpu(spec):
        return None
    rendered = resources(spec.serving.placement, DEFAULT_TRITON_REQUESTS, gpu=False)
    cpus = rendered.get("limits", {}).get("cpu") or rendered["requests"].get("cpu")
    if cpus is None:
        return None  # nothing says how many CPUs the pod gets: ONNX Runtime's default
    return max(1, math.floor(parse_quantity(str(cpus)) / spec.serving.instances))


def _probe(path: str, period: int, failures: int, port: str = "http") -> Obj:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def render_api_container(spec: TransformerSpec, settings: Settings) -> Obj:
    """The client API front beside Triton: the serving image's `kubeformer api`, Triton over loopback gRPC.

    Ready only while Triton is (its /health/ready asks Triton), so the Service sends no client to a
    pod whose engine is still loading; it reads each ensemble's tokenizer from the shared repository.
    """
    return {
        "name": "api",
        "image": spec.serving.image or settings.triton_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "kubeformer",
            "api",
            f"--triton=grpc://127.0.0.1:{GRPC_PORT}",
            f"--repository={ARTIFACT_DIR}/model_repository",
            "--host=0.0.0.0",
            f"--api-port={API_PORT}",
        ],
        # The front never uses a GPU, even where the image's runtime would expose every GPU.
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}],
        "ports": [{"name": "api", "containerPort": API_PORT, "protocol": "TCP"}],
        "livenessProbe": _probe("/health/live", period=10, failures=3, port="api"),
        "readinessProbe": _probe("/health/ready", period=5, failures=2, port="api"),
        "resources": {"requests": DEFAULT_API_REQUESTS},
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _serving_scheduling(spec: TransformerSpec, gpu: EngineGpu | None) -> Obj:
    """The spec's nodeSelector and tolerations, plus the engine's GPU affinity unless the spec's
    nodeSelector already picks GPUs by a GPU feature discovery label (the user's choice wins)."""
    rendered = _scheduling(spec.serving.placement)
    chosen = any(key.startswith(GPU_RESOURCE_PREFIX) for key in spec.serving.placement.node_selector)
    if gpu is not None and not chosen:
        rendered["affinity"] = gpu_affinity(gpu)
    return rendered


def _rollout(gpu: bool) -> Obj:
    """A GPU pool is usually full: a surge pod would wait for a GPU that only the old pod frees, so
    GPU Deployments replace one pod at a time; CPU ones surge and never drop below the replica count."""
    surge, unavailable = (0, 1) if gpu else (1, 0)
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": surge}}


def render_deployment(
    spec: TransformerSpec, target: Target, settings: Settings, gpu: EngineGpu | None = None
) -> Obj:
    """Triton serving the fetched repository; replicas left to the autoscaler when there is one.

    `gpu`: the GPU a TensorRT engine was built on; its pods go only to nodes of that kind.
    """
    on_gpu = uses_gpu(spec)
    volumes = [
        {"name": "models", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        # The python backend (tokenizer) exchanges tensors through shared memory.
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    fetch = {
        "name": "fetch",
        "image": settings.fetch_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": fetch_args(spec, target),
        "env": [{"name": "HOME", "value": "/tmp"}, *storage_env(spec)],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",  # a failed fetch says why in the status
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    triton = {
        "name": "triton",
        "image": spec.serving.image or settings.triton_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "tritonserver",
            f"--model-repository={ARTIFACT_DIR}/model_repository",
            f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}",
            "--allow-metrics=true",
            # p50/p95/p99 per model (nv_inference_*_summary_us): what the dashboard and alerts read.
            "--metrics-config=summary_latencies=true",
            "--strict-readiness=true",
            "--exit-on-error=true",
        ],
        # NGC images set NVIDIA_VISIBLE_DEVICES=all: a CPU pod on a GPU node would see every GPU.
        "env": [
            {"name": "HOME", "value": "/tmp"},
            *([] if on_gpu else [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]),
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe("/v2/health/live", period=5, failures=120),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        "readinessProbe": _probe("/v2/health/ready", period=5, failures=2),
        "resources": resources(spec.serving.placement, DEFAULT_TRITON_REQUESTS, on_gpu),
        # Triton exits on any model load error: its last log lines become the termination message,
        # which the operator puts into the status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }
    metadata = _metadata(target, target.name, "triton")
    deployment_spec: Obj = {
        "selector": {"matchLabels": names.selector(target.name)},
        "strategy": _rollout(on_gpu),
        "template": {
            # The cache key in the pod template rolls the pods when the engine changes.
            "metadata": {"labels": metadata["labels"], "annotations": metadata["annotations"]},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": restricted_pod_security(),
                "initContainers": [fetch],
                "containers": [triton, *([render_api_container(spec, settings)] if spec.serving.api else [])],
                "volumes": volumes,
                **_serving_scheduling(spec, gpu),
            },
        },
    }
    add_pod_overlay(deployment_spec["template"], spec.serving.pod)
    if spec.serving.autoscaling is None:
        deployment_spec["replicas"] = spec.serving.replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": deployment_spec}


def render_service(target: Target, api: bool) -> Obj:
    """Triton's HTTP, gRPC and metrics ports, and the API front's when it runs (`api`)."""
    api_ports = [{"name": "api", "port": API_PORT, "targetPort": "api", "protocol": "TCP"}] if api else []
    return _serving_object(
        "v1",
        "Service",
        target,
        {
            "type": "ClusterIP",
            "selector": names.selector(target.name),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
                *api_ports,
            ],
        },
    )


def render_hpa(scaling: Autoscaling, target: Target) -> Obj:
    """CPU-based autoscaling: works on every cluster, needs the requests the Deployment sets."""
    return _serving_object(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        target,
        {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_percent},
                    },
                }
            ],
        },
    )


def queue_time_query(namespace: str, name: str, model: str) -> str:
    """Average time a request to the ensemble `model` waits in Triton's queue (µs) over the last minute,
    across the pods. Only the ensemble: its steps (tokenizer, engine) queue too, and their requests
    would count each client request three times.
    """
    pods = f'namespace="{namespace}",pod=~"{name}-[a-z0-9]+-[a-z0-9]+",model="{model}"'
    return (
        f"sum(rate(nv_inference_queue_duration_us{{{pods}}}[1m])) / "
        f"clamp_min(sum(rate(nv_inference_request_success{{{pods}}}[1m])), 1e-9)"
    )


def render_scaled_object(
    scaling: Autoscaling, queue_target_us: int, target: Target, prometheus_url: str, model: str
) -> Obj:
    """KEDA scaling on Triton's queue time: grows before latency does, unlike CPU.

    `metricType: Value`: the query is already an average per request, so the HPA KEDA makes must scale
    by currentReplicas x queue / target. KEDA's default, AverageValue, divides the query by the
    replica count instead (ceil(queue / target)), which takes 4 replicas at twice the target down to 2.
    """
    return _serving_object(
        "keda.sh/v1alpha1",
        "ScaledObject",
        target,
        {
            "scaleTargetRef": {"name": target.name},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "Value",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": queue_time_query(target.namespace, target.name, model),
                        "threshold": str(queue_target_us),
                    },
                }
            ],
        },
    )


# The jobs the dashboard and the alerts select Triton's and the API front's series by (as the chart's
# PodMonitor sets them).
TRITON_JOB, API_JOB = "kubeformer-triton", "kubeformer-api"


def render_service_monitor(target: Target, labels: dict[str, str], api: bool) -> Obj:
    """Triton's metrics of one transformer, and the API front's (/metrics on its port) when it runs,
    labelled with `labels` (what the Prometheus selects monitors by) and relabelled as the dashboard and
    the alerts expect: job="kubeformer-triton" (or "kubeformer-api"), transformer=<name>."""

    def endpoint(port: str, job: str) -> Obj:
        relabelings = [
            {"action": "replace", "targetLabel": "job", "replacement": job},
            {"action": "replace", "targetLabel": "transformer", "replacement": target.name},
        ]
        return {"port": port, "path": "/metrics", "interval": "15s", "relabelings": relabelings}

    endpoints = [endpoint("metrics", TRITON_JOB), *([endpoint("api", API_JOB)] if api else [])]
    monitor = _serving_object(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        target,
        {"selector": {"matchLabels": names.selector(target.name)}, "endpoints": endpoints},
    )
    monitor["metadata"]["labels"] = {**labels, **monitor["metadata"]["labels"]}
    return monitor


def owner_reference(owner: Obj) -> Obj:
    """Makes the custom resource the controller of a child: deleting it garbage-collects the child."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(child: Obj, owner: Obj) -> Obj:
    child["metadata"]["ownerReferences"] = [owner_reference(owner)]
    return child
