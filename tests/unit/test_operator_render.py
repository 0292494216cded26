"""Every renderer as a pure function: spec in, Kubernetes dict out."""

from __future__ import annotations

import math

import pytest

from kubeformer_builder.cli.main import make_parser
from kubeformer_builder.cli.options import config_from_args
from kubeformer_operator import names, render
from kubeformer_operator.config import Settings
from kubeformer_operator.spec import parse_spec
from tests.fixtures.specs import make_spec, make_transformer

KEY = "ab" * 32
SETTINGS = Settings(builder_image="builder:1", triton_image="triton:1", fetch_image="fetch:1")


def target(name: str = "demo") -> render.Target:
    return render.Target(name, "ml", KEY, names.artifact_uri("s3://models/kubeformer", "ml", name, KEY))


def job_for(**changes):
    return render.render_build_job(parse_spec(make_spec(**changes), "demo"), target(), SETTINGS)


def test_builder_args_parse_back_into_the_same_config():
    texts = [f"calibration text {i}" for i in range(8)]
    raw = make_spec(
        model__tokenizer="hf://org/tok",
        optimization={
            "precision": "int8",
            "truncation": "refuse",
            "shapes": {
                "batch": {"min": 1, "opt": 4, "max": 16},
                "sequence": {"min": 8, "opt": 64, "max": 128},
            },
            "calibration": {"texts": texts, "samples": 64, "method": "entropy"},
            "evaluation": {"examples": [{"text": "fine", "label": "positive"}], "labelColumn": "label"},
            "accuracyGate": {"metric": "accuracy", "maxDrop": 0.02},
        },
    )
    spec = parse_spec(raw, "demo")
    args = make_parser().parse_args(render.builder_args(spec.engine, "s3://out/x"))
    assert config_from_args(args) == spec.engine
    assert args.output == "s3://out/x"


def test_build_job_is_named_by_key_and_passes_restricted():
    job = job_for()
    assert job["metadata"]["name"] == f"demo-build-{KEY[:10]}"
    assert job["metadata"]["labels"][names.MANAGED_BY] == "kubeformer"
    assert job["metadata"]["annotations"][names.CACHE_KEY] == KEY
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert f"--output=s3://models/kubeformer/ml/demo/{KEY}" in container["args"]
    assert job["spec"]["backoffLimit"] == 1 and job["spec"]["activeDeadlineSeconds"] == 7200


def test_build_job_gets_credentials_only_through_secret_refs():
    job = job_for(model__credentialsSecret="hf-token")
    container = job["spec"]["template"]["spec"]["containers"][0]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secret_env["AWS_ACCESS_KEY_ID"] == {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
    assert secret_env["HF_TOKEN"] == {"name": "hf-token", "key": "HF_TOKEN", "optional": True}
    # An s3:// model source's keys, apart from the artifact storage's (storage.source_credentials).
    assert secret_env["KUBEFORMER_SOURCE_AWS_ACCESS_KEY_ID"] == {
        "name": "hf-token",
        "key": "AWS_ACCESS_KEY_ID",
        "optional": True,
    }
    assert secret_env["KUBEFORMER_SOURCE_AWS_SECRET_ACCESS_KEY"]["key"] == "AWS_SECRET_ACCESS_KEY"
    assert "SECRET" not in " ".join(container["args"]).upper()


def test_storage_region_reaches_the_job_and_the_fetch_container_with_or_without_a_secret():
    for secret in ("s3-creds", None):
        spec = parse_spec(make_spec(storage__region="eu-west-1", storage__secretRef=secret), "demo")
        job = render.render_build_job(spec, target(), SETTINGS)
        (fetch,) = render.render_deployment(spec, target(), SETTINGS)["spec"]["template"]["spec"][
            "initContainers"
        ]
        for container in (job["spec"]["template"]["spec"]["containers"][0], fetch):
            assert {"name": "AWS_REGION", "value": "eu-west-1"} in container["env"]
            assert any(e["name"] == "AWS_ACCESS_KEY_ID" for e in container["env"]) == bool(secret)


def test_build_job_fails_at_once_on_permanent_builder_errors():
    rules = job_for()["spec"]["podFailurePolicy"]["rules"]
    fail = next(rule for rule in rules if rule["action"] == "FailJob")
    assert fail["onExitCodes"]["values"] == [2, 4, 6, 7, 8]  # spec, model, gate, artifact, backend


def test_tensorrt_build_asks_for_a_gpu_and_keeps_placement():
    job = job_for(
        optimization__backend="tensorrt",
        build={"nodeSelector": {"gpu": "h100"}, "tolerations": [{"key": "gpu", "operator": "Exists"}]},
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]


def test_deployment_fetches_verifies_and_applies_serving_fields():
    spec = parse_spec(
        make_spec(
            serving={
                "replicas": 3,
                "instancesPerReplica": 2,
                "dynamicBatching": {"maxQueueDelayMicroseconds": 500, "preferredBatchSizes": [4, 8]},
            }
        ),
        "demo",
    )
    deployment = render.render_deployment(spec, target(), SETTINGS)
    pod = deployment["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["image"] == "fetch:1"
    assert fetch["args"][:3] == ["fetch", f"s3://models/kubeformer/ml/demo/{KEY}", render.ARTIFACT_DIR]
    assert {
        "--instances=2",
        "--max-queue-delay-us=500",
        "--preferred-batch-sizes=4,8",
        "--instance-kind=cpu",
    } <= set(fetch["args"])
    triton, _api = pod["containers"]
    assert triton["image"] == "triton:1"
    assert {p["containerPort"] for p in triton["ports"]} == {8000, 8001, 8002}
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["metadata"]["annotations"][names.CACHE_KEY] == KEY


def test_serving_only_changes_change_only_the_deployment_not_the_job():
    before, after = make_spec(), make_spec(serving={"replicas": 4})
    job = lambda raw: render.render_build_job(parse_spec(raw, "demo"), target(), SETTINGS)  # noqa: E731
    deploy = lambda raw: render.render_deployment(parse_spec(raw, "demo"), target(), SETTINGS)  # noqa: E731
    assert job(before) == job(after)
    assert deploy(before) != deploy(after)


def test_autoscaled_deployment_leaves_replicas_to_the_autoscaler():
    spec = parse_spec(make_spec(serving={"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}), "demo")
    assert "replicas" not in render.render_deployment(spec, target(), SETTINGS)["spec"]
    hpa = render.render_hpa(spec.serving.autoscaling, target())
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo"}


def test_keda_scales_on_the_ensembles_queue_time():
    spec = parse_spec(make_spec(serving={"autoscaling": {"targetQueueMicroseconds": 2000}}), "demo")
    scaled = render.render_scaled_object(spec.serving.autoscaling, 2000, target(), "http://prom:9090", "demo")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["threshold"] == "2000"
    assert trigger["metricType"] == "Value"
    query = trigger["metadata"]["query"]
    assert "nv_inference_queue_duration_us" in query and "nv_inference_request_success" in query
    # Both series on the ensemble only (its tokenizer and engine steps would count each request thrice).
    assert query.count('namespace="ml"') == 2 and query.count('model="demo"') == 2


# The HPA's documented algorithm (kubernetes.io, "Horizontal Pod Autoscaling", Algorithm details), which
# is what the HPA that KEDA creates from a ScaledObject runs. A ratio within the tolerance (0.1 by
# default) keeps the current count.
TOLERANCE = 0.1


def hpa_desired_replicas(metric_type: str, current_replicas: int, metric: float, target: float) -> int:
    """External metric, target type Value: ceil(currentReplicas x metric / target). AverageValue: the
    metric is divided among the pods first, ratio = metric / (target x currentReplicas), which gives
    ceil(metric / target)."""
    ratio = metric / target if metric_type == "Value" else metric / (target * current_replicas)
    if abs(ratio - 1.0) <= TOLERANCE:
        return current_replicas
    return math.ceil(current_replicas * ratio)


@pytest.mark.parametrize(
    ("replicas", "queue_over_target", "expected"),
    [(4, 2.0, 8), (4, 1.05, 4), (4, 0.5, 2), (1, 3.0, 3), (6, 0.0, 0)],
)
def test_rendered_metric_type_scales_replicas_in_proportion_to_queue_time(
    replicas, queue_over_target, expected
):
    """Queue time is an average per request, not a total: twice the target must double the replicas."""
    spec = parse_spec(make_spec(serving={"autoscaling": {"targetQueueMicroseconds": 2000}}), "demo")
    scaled = render.render_scaled_object(spec.serving.autoscaling, 2000, target(), "http://prom:9090", "demo")
    (trigger,) = scaled["spec"]["triggers"]
    threshold = float(trigger["metadata"]["threshold"])
    desired = hpa_desired_replicas(trigger["metricType"], replicas, queue_over_target * threshold, threshold)
    assert desired == expected
    # KEDA's default would have scaled 4 replicas at twice the target down to 2.
    assert hpa_desired_replicas("AverageValue", 4, 2 * threshold, threshold) == 2


@pytest.mark.parametrize(
    ("resources", "instances", "threads"),
    [
        ({}, 1, 1),  # the default request: 1 CPU
        ({"requests": {"cpu": "4"}}, 1, 4),
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "8"}}, 2, 4),  # the limit, shared by 2 instances
        ({"requests": {"cpu": "500m"}}, 1, 1),  # at least one thread
        ({"requests": {"cpu": 3}}, 2, 1),
        ({"requests": {"memory": "1Gi"}}, 1, None),  # nothing says how many CPUs
    ],
)
def test_cpu_serving_threads_follow_the_containers_cpus(resources, instances, threads):
    serving = {"instancesPerReplica": instances, "resources": resources}
    spec = parse_spec(make_spec(serving=serving), "demo")
    assert render.intra_op_threads(spec) == threads
    (fetch,) = render.render_deployment(spec, target(), SETTINGS)["spec"]["template"]["spec"][
        "initContainers"
    ]
    flags = [a for a in fetch["args"] if a.startswith("--intra-op-threads=")]
    assert flags == ([] if threads is None else [f"--intra-op-threads={threads}"])


def test_gpu_serving_leaves_threads_to_onnx_runtime():
    spec = parse_spec(make_spec(serving={"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "4"}}}), "demo")
    assert render.intra_op_threads(spec) is None


def test_service_and_monitor_select_the_serving_pods():
    service = render.render_service(target(), api=True)
    assert service["spec"]["selector"] == names.selector("demo")
    assert [p["name"] for p in service["spec"]["ports"]] == ["http", "grpc", "metrics", "api"]
    assert service["spec"]["ports"][-1]["port"] == render.API_PORT == 8080
    monitor = render.render_service_monitor(target(), {"release": "kube-prometheus-stack"}, api=True)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [
        ("metrics", "/metrics"),
        ("api", "/metrics"),
    ]
    triton_endpoint, api_endpoint = monitor["spec"]["endpoints"]
    # What a default kube-prometheus-stack selects, and the jobs the dashboard and the alerts select.
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for endpoint, job in ((triton_endpoint, "kubeformer-triton"), (api_endpoint, "kubeformer-api")):
        assert {"action": "replace", "targetLabel": "job", "replacement": job} in endpoint["relabelings"]
        assert {"action": "replace", "targetLabel": "transformer", "replacement": "demo"} in endpoint[
            "relabelings"
        ]


def test_api_front_runs_beside_triton_by_default_with_restricted_security():
    deployment = render.render_deployment(parse_spec(make_spec(), "demo"), target(), SETTINGS)
    pod = deployment["spec"]["template"]["spec"]
    triton, api = pod["containers"]
    assert api["name"] == "api" and api["image"] == triton["image"] == "triton:1"
    assert api["args"][:2] == ["kubeformer", "api"]
    assert "--triton=grpc://127.0.0.1:8001" in api["args"]  # the pod's loopback
    assert f"--repository={render.ARTIFACT_DIR}/model_repository" in api["args"]
    assert {"--host=0.0.0.0", "--api-port=8080"} <= set(api["args"])
    assert api["ports"] == [{"name": "api", "containerPort": 8080, "protocol": "TCP"}]
    assert api["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "api"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "api"}
    assert api["securityContext"] == render.restricted_container_security()
    assert {"name": "models", "mountPath": render.MODELS_DIR, "readOnly": True} in api["volumeMounts"]
    assert {v["name"] for v in pod["volumes"]} >= {m["name"] for m in api["volumeMounts"]}


def test_api_front_can_be_turned_off():
    spec = parse_spec(make_spec(serving={"api": {"enabled": False}}), "demo")
    assert spec.serving.api is False
    deployment = render.render_deployment(spec, target(), SETTINGS)
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["triton"]
    service = render.render_service(target(), api=spec.serving.api)
    assert [p["name"] for p in service["spec"]["ports"]] == ["http", "grpc", "metrics"]
    monitor = render.render_service_monitor(target(), {}, api=spec.serving.api)
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def test_children_are_owned_by_the_custom_resource():
    owner = make_transformer()
    child = render.owned_by(render.render_service(target(), api=True), owner)
    (ref,) = child["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "kubeformer.dev/v1alpha1",
        "kind": "OptimizedTransformer",
        "name": "demo",
        "uid": "uid-1234",
        "controller": True,
        "blockOwnerDeletion": True,
    }


POD = {
    "serviceAccountName": "inference",
    "imagePullSecrets": [{"name": "regcred"}],
    "priorityClassName": "high",
    "runtimeClassName": "nvidia",
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "labels": {"team": "search", names.TRANSFORMER: "someone-else"},
    "annotations": {"sidecar.istio.io/inject": "false"},
    "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}, {"name": "HOME", "value": "/root"}],
}


def test_pod_overlay_adds_what_the_cluster_requires_and_never_replaces_the_operators_fields():
    spec = parse_spec(make_spec(serving={"pod": POD}, build={"pod": POD}), "demo")
    job_pod = render.render_build_job(spec, target(), SETTINGS)["spec"]["template"]
    serving_pod = render.render_deployment(spec, target(), SETTINGS)["spec"]["template"]
    for pod in (job_pod, serving_pod):
        assert pod["spec"]["serviceAccountName"] == "inference"
        assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
        assert (pod["spec"]["priorityClassName"], pod["spec"]["runtimeClassName"]) == ("high", "nvidia")
        assert pod["spec"]["affinity"] == POD["affinity"]
        assert pod["metadata"]["labels"]["team"] == "search"
        assert pod["metadata"]["labels"][names.TRANSFORMER] == "demo"  # the selector stays ours
        assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        assert pod["metadata"]["annotations"][names.CACHE_KEY] == KEY
        assert pod["spec"]["automountServiceAccountToken"] is False
        for container in [*pod["spec"].get("initContainers", ()), *pod["spec"]["containers"]]:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["HTTPS_PROXY"] == "http://proxy:3128"
            assert env["HOME"] == "/tmp" and len(env) == len(container["env"])  # ours, once
    deployment = render.render_deployment(spec, target(), SETTINGS)
    assert "team" not in deployment["metadata"]["labels"]  # the pods', not the Deployment's


def test_no_pod_overlay_renders_as_before():
    plain = render.render_deployment(parse_spec(make_spec(), "demo"), target(), SETTINGS)
    empty = render.render_deployment(parse_spec(make_spec(serving={"pod": {}}), "demo"), target(), SETTINGS)
    assert plain == empty
    assert "serviceAccountName" not in plain["spec"]["template"]["spec"]


H200 = render.EngineGpu.parse("sm_90", "NVIDIA H200")
TENSORRT_SPEC = {"optimization__backend": "tensorrt"}


def serving(gpu: render.EngineGpu | None = None, **changes) -> dict:
    """The serving Deployment of make_spec(**changes) for an engine built on `gpu`."""
    return render.render_deployment(parse_spec(make_spec(**changes), "demo"), target(), SETTINGS, gpu)


def test_engine_gpu_parses_architectures_and_gfd_product_labels():
    assert (H200.major, H200.minor, H200.product_label) == (9, 0, "NVIDIA-H200")
    blackwell = render.EngineGpu.parse("sm_120", "NVIDIA RTX PRO 6000 Blackwell (Server)")
    assert (blackwell.major, blackwell.minor) == (12, 0)
    assert blackwell.product_label == "NVIDIA-RTX-PRO-6000-Blackwell-Server"
    assert render.EngineGpu.parse(None, None) is None and render.EngineGpu.parse("x86", None) is None


def test_tensorrt_pods_go_only_to_nodes_with_the_engines_compute_capability():
    deployment = serving(H200, **TENSORRT_SPEC)
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "nvidia.com/gpu.compute.major", "operator": "In", "values": ["9"]},
        {"key": "nvidia.com/gpu.compute.minor", "operator": "In", "values": ["0"]},
    ]
    (preferred,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["preference"]["matchExpressions"][0]["values"] == ["NVIDIA-H200"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    triton = deployment["spec"]["template"]["spec"]["containers"][0]
    assert triton["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert all(e["name"] != "NVIDIA_VISIBLE_DEVICES" for e in triton["env"])


def test_users_gpu_node_selector_overrides_the_engines_affinity():
    selector = {"nvidia.com/gpu.product": "NVIDIA-H200-MIG-1g.18gb"}
    pod = serving(H200, serving__nodeSelector=selector, **TENSORRT_SPEC)["spec"]["template"]["spec"]
    assert "affinity" not in pod and pod["nodeSelector"] == selector
    other = serving(H200, serving__nodeSelector={"pool": "a"}, **TENSORRT_SPEC)["spec"]["template"]
    assert other["spec"]["nodeSelector"] == {"pool": "a"} and "affinity" in other["spec"]


def test_mig_slice_counts_as_the_gpu_and_gets_no_second_one():
    mig = {"limits": {"nvidia.com/mig-1g.10gb": 1}}
    deployment = serving(None, serving__resources=mig)  # ONNX Runtime on a MIG slice
    triton = deployment["spec"]["template"]["spec"]["containers"][0]
    assert triton["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": 1}
    assert "--instance-kind=gpu" in deployment["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    tensorrt = serving(H200, serving__resources=mig, **TENSORRT_SPEC)["spec"]["template"]["spec"]
    assert tensorrt["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": 1}


def test_cpu_serving_pods_see_no_gpu_and_surge():
    deployment = serving()
    triton = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in triton["env"]
    assert "limits" not in triton["resources"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert "affinity" not in deployment["spec"]["template"]["spec"]
