"""Every renderer as a pure function: spec in, Kubernetes dict out."""

from __future__ import annotations

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
    assert "SECRET" not in " ".join(container["args"]).upper()


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
    (triton,) = pod["containers"]
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


def test_keda_scales_on_triton_queue_time():
    spec = parse_spec(make_spec(serving={"autoscaling": {"targetQueueMicroseconds": 2000}}), "demo")
    scaled = render.render_scaled_object(spec.serving.autoscaling, 2000, target(), "http://prom:9090")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["threshold"] == "2000"
    assert "nv_inference_queue_duration_us" in trigger["metadata"]["query"]
    assert 'namespace="ml"' in trigger["metadata"]["query"]


def test_service_and_monitor_select_the_serving_pods():
    service = render.render_service(target())
    assert service["spec"]["selector"] == names.selector("demo")
    assert [p["name"] for p in service["spec"]["ports"]] == ["http", "grpc", "metrics"]
    monitor = render.render_service_monitor(target())
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_children_are_owned_by_the_custom_resource():
    owner = make_transformer()
    child = render.owned_by(render.render_service(target()), owner)
    (ref,) = child["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "kubeformer.dev/v1alpha1",
        "kind": "OptimizedTransformer",
        "name": "demo",
        "uid": "uid-1234",
        "controller": True,
        "blockOwnerDeletion": True,
    }
