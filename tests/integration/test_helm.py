"""The Helm chart (helm/kubeformer) with a real helm v3 binary (tests/fixtures/helm.py).

Static checks first (lint, rendered objects validated against the Kubernetes OpenAPI schemas, values
refused by values.schema.json, CRDs identical to crds/, RBAC rules matching what the operator uses),
then `helm install` into the real test control plane and `kubeformer-operator` run here with nothing
but the chart's ServiceAccount token: it reconciles an OptimizedTransformer to Ready, so the chart's
RBAC is enough, and calls outside it are forbidden, so it is no more than that.

This module runs its own operators: the session's `operator` fixture (tests/fixtures/operator.py)
watches every namespace and must not run alongside; no test here requests it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubeformer_builder.pipeline import build
from kubeformer_operator import kube, names
from kubeformer_operator.config import load_settings
from kubeformer_operator.keys import engine_key
from kubeformer_operator.spec import parse_spec
from tests.cluster import kwok, versions
from tests.cluster.controlplane import ControlPlane
from tests.fixtures.operator import REPO, RESTRICTED, Operator, Transformers

# Fixtures of the operator tests, reused: a spec for a tiny model stored in the test SeaweedFS.
from tests.integration.test_operator import bucket, spec_for  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("without_session_operator")]

CHART = REPO / "helm" / "kubeformer"
# The Kubernetes version whose OpenAPI schemas rendered objects must satisfy: the control plane's
# minor (tests/cluster/versions.py). kubernetes-validate >= 1.36 ships the 1.36 schemas; if a later
# control plane is newer than the package's newest schemas, validate against the newest it has.
SCHEMA_VERSION = ".".join(versions.KUBERNETES.lstrip("v").split(".")[:2]) + ".0"
Obj = dict[str, Any]


class Helm:
    """The helm binary with its own config, cache and data directories (nothing of ~/.config/helm)."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        self.env.pop("KUBECONFIG", None)

    def __call__(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess:
        env = {**self.env, **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {})}
        proc = subprocess.run(
            [str(self.binary), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def template(self, *args: str) -> list[Obj]:
        out = self("template", "kf", str(CHART), "--namespace", "kubeformer-system", *args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def helm_cli(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-home"))


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def workload(objects: list[Obj]) -> Obj:
    """The operator's Deployment (one replica) or StatefulSet (peering)."""
    (found,) = by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet")
    return found


def operator_container(objects: list[Obj]) -> Obj:
    (container,) = workload(objects)["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: Obj) -> dict[str, str]:
    """The literal environment (entries from the downward API left out)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# ----- static: lint, render, schema, CRDs -----


@pytest.mark.parametrize(
    "values",
    [[], ["--set", "operator.watchNamespaces={team-a,team-b}", "--set", "operator.replicas=2"]],
    ids=["defaults", "namespaced-peering"],
)
def test_lint_is_clean(helm_cli, values):
    out = helm_cli("lint", "--strict", str(CHART), *values).stdout
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


RENDERINGS = {
    "cluster-wide": [],
    "namespaced": ["--set", "operator.watchNamespaces={team-a,team-b}"],
    "cluster-wide-peering": ["--set", "operator.replicas=2"],
    "namespaced-peering": ["--set", "operator.watchNamespaces={team-a}", "--set", "operator.replicas=3"],
}


@pytest.mark.parametrize("case", RENDERINGS, ids=list(RENDERINGS))
def test_rendered_objects_are_valid_kubernetes(helm_cli, case):
    objects = helm_cli.template(*RENDERINGS[case])
    for obj in objects:
        if obj["apiVersion"].startswith("kopf.dev/"):
            continue  # kopf's peering objects: no schema beyond the chart's own CRD (an open object)
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    kinds = {o["kind"] for o in objects}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Pod"} <= kinds
    assert workload(objects)["kind"] == ("StatefulSet" if "peering" in case else "Deployment")


def test_cluster_wide_by_default(helm_cli):
    objects = helm_cli.template()
    assert by_kind(objects, "Role") == [] and by_kind(objects, "RoleBinding") == []
    (role,) = by_kind(objects, "ClusterRole")
    assert "optimizedtransformers" in {r for rule in role["rules"] for r in rule["resources"]}
    container = operator_container(objects)
    assert container["command"] == ["kubeformer-operator"]
    assert container["args"] == ["--liveness=http://0.0.0.0:8081/healthz"]
    env = env_of(container)
    assert "KUBEFORMER_PEERING" not in env
    assert env["KUBEFORMER_BUILDER_IMAGE"] == "ghcr.io/kubeformer/builder:0.1.0"
    assert env["KUBEFORMER_TRITON_IMAGE"] == "ghcr.io/kubeformer/triton:0.1.0"
    assert env["KUBEFORMER_FETCH_IMAGE"] == "ghcr.io/kubeformer/fetch:0.1.0"
    assert env["KUBEFORMER_KEDA"] == "auto" and env["KUBEFORMER_METRICS_PORT"] == "8080"
    assert "KUBEFORMER_PROMETHEUS_URL" not in env
    # Every KUBEFORMER_* value the chart renders is one the operator accepts.
    load_settings(env)
    (binding,) = by_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kf-kubeformer", "namespace": "kubeformer-system"}
    ]


def test_monitoring_labels_reach_the_operators_per_model_service_monitors(helm_cli):
    env = env_of(operator_container(helm_cli.template("--set", "monitoring.labels.release=kps")))
    assert json.loads(env["KUBEFORMER_MONITOR_LABELS"]) == {"release": "kps"}
    assert json.loads(env_of(operator_container(helm_cli.template()))["KUBEFORMER_MONITOR_LABELS"]) == {}


def test_the_chart_pod_monitor_turns_per_model_service_monitors_off(helm_cli):
    scraped_once = helm_cli.template("--set", "monitoring.tritonMonitor.enabled=true")
    assert env_of(operator_container(scraped_once))["KUBEFORMER_SERVICE_MONITOR"] == "false"
    assert env_of(operator_container(helm_cli.template()))["KUBEFORMER_SERVICE_MONITOR"] == "auto"


def test_watch_namespaces_get_roles_and_namespace_arguments(helm_cli):
    objects = helm_cli.template(
        "--set",
        "operator.watchNamespaces={team-a,team-b}",
        "--set",
        "prometheusUrl=http://prometheus.monitoring:9090",
        "--set",
        "keda=true",
    )
    container = operator_container(objects)
    assert container["args"][1:] == ["--namespace=team-a", "--namespace=team-b"]
    assert {r["metadata"]["namespace"] for r in by_kind(objects, "Role")} == {"team-a", "team-b"}
    assert {b["metadata"]["namespace"] for b in by_kind(objects, "RoleBinding")} == {"team-a", "team-b"}
    # What stays cluster-wide: reading the two CRDs that announce KEDA and the Prometheus Operator,
    # and kopf's observation of CRDs and Namespaces (definitions and names, no custom objects).
    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["scaledobjects.keda.sh", "servicemonitors.monitoring.coreos.com"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]
    env = env_of(container)
    assert env["KUBEFORMER_PROMETHEUS_URL"] == "http://prometheus.monitoring:9090"
    assert load_settings(env).use_keda is True


@pytest.mark.parametrize("namespaces", [[], ["team-a", "team-b"]], ids=["cluster-wide", "namespaced"])
def test_more_replicas_turn_on_kopf_peering(helm_cli, namespaces):
    values = ["--set", "operator.replicas=2"]
    if namespaces:
        values += ["--set", f"operator.watchNamespaces={{{','.join(namespaces)}}}"]
    objects = helm_cli.template(*values)
    container = operator_container(objects)
    assert env_of(container)["KUBEFORMER_PEERING"] == "kf-kubeformer"
    # kopf pauses every peer that shares its priority: each replica gets its pod index.
    (priority,) = [e for e in container["env"] if e["name"] == "KUBEFORMER_PEERING_PRIORITY"]
    field = priority["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert workload(objects)["spec"]["podManagementPolicy"] == "Parallel"
    if namespaces:
        peerings = by_kind(objects, "KopfPeering")
        assert {p["metadata"]["namespace"] for p in peerings} == set(namespaces)
        rules = [rule for role in by_kind(objects, "Role") for rule in role["rules"]]
        plural = "kopfpeerings"
    else:
        (peering,) = by_kind(objects, "ClusterKopfPeering")
        assert peering["metadata"]["name"] == "kf-kubeformer"
        rules = by_kind(objects, "ClusterRole")[0]["rules"]
        plural = "clusterkopfpeerings"
    kopf_rules = [r for r in rules if r["apiGroups"] == ["kopf.dev"]]
    assert kopf_rules == max(1, len(namespaces)) * [
        {"apiGroups": ["kopf.dev"], "resources": [plural], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["kopf.dev"],
            "resources": [plural],
            "resourceNames": ["kf-kubeformer"],
            "verbs": ["get", "patch"],
        },
    ]


def test_operator_pod_is_locked_down(helm_cli):
    objects = helm_cli.template()
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two standalone operators
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kf-kubeformer"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    (service,) = by_kind(objects, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The helm test pod meets the restricted Pod Security level too.
    (test_pod,) = by_kind(objects, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test_pod["spec"]["containers"][0]["securityContext"] == container["securityContext"]


def test_image_tags_are_pinned():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for block in ("operator", "builder", "fetch", "triton"):
        tag = values[block]["image"]["tag"]
        assert isinstance(tag, str) and re.fullmatch(r"\d+\.\d+\.\d+", tag), (block, tag)


BAD_VALUES = {
    "negative-replicas": (["--set", "operator.replicas=-1"], "/operator/replicas"),
    "replicas-not-a-number": (["--set", "operator.replicas=two"], "/operator/replicas"),
    "unknown-top-level-key": (["--set", "operatr.replicas=2"], "additional properties 'operatr'"),
    "unknown-operator-key": (["--set", "operator.watchNamespace=a"], "'watchNamespace' not allowed"),
    "unknown-builder-key": (["--set", "builder.tag=1"], "additional properties 'tag'"),
    "unknown-triton-key": (["--set", "triton.image.pullPolicy=Always"], "/triton/image"),
    "bad-pull-policy": (["--set", "operator.image.pullPolicy=Sometimes"], "/operator/image/pullPolicy"),
    "bad-keda-switch": (["--set", "keda=maybe"], "/keda"),
    "bad-namespace-name": (["--set", "operator.watchNamespaces={Team_A}"], "/operator/watchNamespaces/0"),
    "port-out-of-range": (["--set", "operator.metricsPort=70000"], "/operator/metricsPort"),
    "watch-namespaces-not-a-list": (
        ["--set", "operator.watchNamespaces=team-a"],
        "/operator/watchNamespaces",
    ),
    "empty-image-tag": (["--set", "builder.image.tag="], "/builder/image/tag"),
    "bad-monitoring-type": (["--set", "monitoring.dashboard.enabled=yes"], "/monitoring/dashboard/enabled"),
    "unknown-monitoring-key": (["--set", "monitoring.grafana=true"], "additional properties 'grafana'"),
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_bad_values_are_refused_naming_the_field(helm_cli, case):
    values, field = BAD_VALUES[case]
    proc = helm_cli("template", "kf", str(CHART), *values, check=False)
    assert proc.returncode != 0, f"accepted {values}"
    assert "don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert field in proc.stderr, proc.stderr


def test_monitoring_schema_accepts_exactly_the_values_blocks_keys():
    """values.schema.json's `monitoring` property: every key of values.yaml's block, and no other."""
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["monitoring"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())["monitoring"]
    assert set(schema["properties"]) == set(values)
    for key, block in values.items():
        if "properties" in schema["properties"][key]:  # a block of settings, not a map like `labels`
            assert set(schema["properties"][key]["properties"]) == set(block), key


def test_chart_crds_are_identical_to_the_repository_crds():
    repo = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert sorted(chart) == sorted(repo)
    for name, content in repo.items():
        assert chart[name] == content, f"helm/kubeformer/crds/{name} differs from crds/{name}"


# ----- RBAC: exactly what the operator uses, each rule explained -----


def rbac_rules(objects: list[Obj]) -> list[Obj]:
    return [
        rule for kind in ("ClusterRole", "Role") for role in by_kind(objects, kind) for rule in role["rules"]
    ]


@pytest.mark.parametrize("namespaced", [False, True], ids=["cluster-wide", "namespaced"])
def test_rbac_covers_exactly_the_kinds_the_operator_touches(helm_cli, namespaced):
    """kube.PATHS lists every kind the operator reads or writes; kopf adds Events, the status patch and
    its observation of CRDs (and of Namespaces when it watches only some)."""
    objects = helm_cli.template(*(["--set", "operator.watchNamespaces={team-a}"] if namespaced else []))
    granted = {res for rule in rbac_rules(objects) for res in rule["resources"]}
    used = {plural for _, plural in kube.PATHS.values()}
    kopf = {"optimizedtransformers/status", "events", "customresourcedefinitions"}
    assert granted == used | kopf | ({"namespaces"} if namespaced else set())
    for rule in rbac_rules(objects):
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert set(rule["verbs"]) <= {"get", "list", "watch", "create", "patch", "delete"}, rule
    # Secrets: read by name only, never listed or watched.
    (secrets,) = [r for r in rbac_rules(objects) if r["resources"] == ["secrets"]]
    assert secrets["verbs"] == ["get"]


def test_every_rbac_rule_says_why():
    lines = [line.strip() for line in (CHART / "templates" / "rbac.yaml").read_text().splitlines()]
    rules = [n for n, line in enumerate(lines) if line.startswith("- apiGroups:")]
    assert len(rules) >= 12
    for number in rules:
        assert lines[number - 1].startswith("#"), f"rbac.yaml line {number + 1}: a rule without a why"


# ----- installed into the real control plane -----


def token_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig for `account`'s token (kubectl create token), with the control plane's server and CA."""
    token = plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(plane._admin_kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": admin["clusters"][0]["name"], "user": account, "namespace": namespace},
            }
        ],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def kubectl_as(plane: ControlPlane, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(plane.binaries.kubectl), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def can_i(plane: ControlPlane, kubeconfig: Path, *args: str) -> bool:
    answer = kubectl_as(plane, kubeconfig, "auth", "can-i", *args).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    account: str  # the operator's ServiceAccount
    token: Path  # a kubeconfig with nothing but that account's token
    output: str  # what `helm install` printed (NOTES.txt)


@pytest.fixture
def install(control_plane: ControlPlane, helm_cli: Helm, tmp_path: Path) -> Iterator[Callable[..., Release]]:
    """`install(namespace, *values)`: helm install a fresh release, waiting until the operator's pod was
    admitted and is Ready (kwok plays its kubelet; nothing runs in it). Uninstalled after the test."""
    installed: list[Release] = []
    admin = control_plane._admin_kubeconfig

    def run(namespace: str, *values: str) -> Release:
        name = f"kf-{uuid.uuid4().hex[:6]}"
        done = helm_cli(
            "install", name, str(CHART), "-n", namespace, "--wait", "--timeout=90s", *values, kubeconfig=admin
        )
        for crd in ("optimizedtransformers.kubeformer.dev", "clusterkopfpeerings.kopf.dev"):
            control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")
        account = f"{name}-kubeformer"
        token = token_kubeconfig(control_plane, namespace, account, tmp_path / f"{account}.yaml")
        installed.append(Release(name, namespace, account, token, done.stdout))
        return installed[-1]

    yield run
    for release in installed:
        helm_cli(
            "uninstall", release.name, "-n", release.namespace, "--timeout=60s", kubeconfig=admin, check=False
        )


def installed_operator(
    plane: ControlPlane, release: Release, kind: str = "deployment"
) -> tuple[dict[str, str], list[str]]:
    """The literal KUBEFORMER_* environment and the arguments of the workload helm installed."""
    installed = yaml.safe_load(
        plane.kubectl("get", kind, release.account, "-n", release.namespace, "-o", "yaml").stdout
    )
    (container,) = installed["spec"]["template"]["spec"]["containers"]
    return env_of(container), container["args"]


def run_here(release: Release, env: dict[str, str], args: list[str], log: Path, **extra: str) -> Operator:
    """The installed operator's settings and namespace arguments, run on this machine with the token.

    Only the metrics port and the health endpoint move (to free local ports); the rest is as installed.
    """
    env = {k: v for k, v in env.items() if k != "KUBEFORMER_METRICS_PORT"} | extra
    namespaces = [a for a in args if a.startswith("--namespace")]
    return Operator(release.token, log, env, namespaces).start()


def assert_no_refusals(operator: Operator) -> None:
    """No request of the operator (or of kopf for it) was refused by RBAC."""
    refused = re.findall(r'User "system:serviceaccount:[^"]+" cannot [^"]+', operator.logs())
    assert not refused, sorted(set(refused))


def prebuild_for(spec: Obj, name: str, namespace: str, env: dict[str, str], s3_server, monkeypatch) -> str:
    """Build with the real builder to where an operator with these settings will look (a cache hit)."""
    parsed = parse_spec(spec, name)
    uri = names.artifact_uri(parsed.storage.uri, namespace, name, engine_key(parsed, load_settings(env)))
    for variable, value in s3_server.env().items():
        monkeypatch.setenv(variable, value)
    build(parsed.engine, uri)
    return uri


def run_helm_test(
    control_plane: ControlPlane, helm_cli: Helm, release: Release, operator: Operator, kwok_stage
):
    """The chart's test hook: its pod is admitted and `helm test` passes when it exits 0 (kwok ends it,
    no kubelet runs it), and its own check, run here against this operator's ports, passes."""
    test_pod = {"app.kubernetes.io/instance": release.name, "app.kubernetes.io/component": "test"}
    kwok_stage(kwok.pod_succeeds_stage(f"helm-test-{release.name}", test_pod))
    admin = control_plane._admin_kubeconfig
    helm_cli("test", release.name, "-n", release.namespace, "--timeout=60s", kubeconfig=admin)
    hooks = yaml.safe_load_all(
        helm_cli("get", "hooks", release.name, "-n", release.namespace, kubeconfig=admin).stdout
    )
    (pod,) = [h for h in hooks if h and h["kind"] == "Pod"]
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    service = f"http://{release.account}.{release.namespace}.svc"
    script = (
        command[2]
        .replace(f"{service}:8081", f"http://127.0.0.1:{operator.health_port}")
        .replace(f"{service}:8080", f"http://127.0.0.1:{operator.metrics_port}")
    )
    assert script != command[2]
    check = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and "operator healthy" in check.stdout, check.stderr


def test_installed_operator_reconciles_with_its_namespaced_rbac_and_no_more(
    control_plane,
    helm_cli,
    install,
    make_namespace,
    s3_server,
    spec_for,  # noqa: F811
    monkeypatch,
    tmp_path,
    kwok_stage,
):
    system = make_namespace(labels=RESTRICTED)  # the operator's pod must pass `restricted` admission
    watched, other = make_namespace(labels=RESTRICTED), make_namespace()
    release = install(system, "--set", f"operator.watchNamespaces={{{watched}}}")
    assert "kubectl get ot" in release.output and "s3-credentials" in release.output  # NOTES.txt
    env, args = installed_operator(control_plane, release)
    assert f"--namespace={watched}" in args

    transformers = Transformers(control_plane, watched, s3_server)
    operator = None
    try:
        spec = spec_for()
        uri = prebuild_for(spec, "cached", watched, env, s3_server, monkeypatch)
        operator = run_here(release, env, args, tmp_path / "operator.log")
        transformers.create("cached", spec)
        ready = transformers.wait_phase("cached", "Ready", timeout=120)
        assert ready["status"]["engine"]["uri"] == uri
        assert operator.metrics()["kubeformer_cache_hits_total"] == 1  # this operator did it
        transformers.wait_event("cached", lambda e: True, "any Event (the phase changes post them)")
        assert_no_refusals(operator)
        run_helm_test(control_plane, helm_cli, release, operator, kwok_stage)
    finally:
        if operator is not None:
            operator.stop()
        transformers.close()

    # The token reaches what the operator needs in its namespace and nothing else.
    token = release.token
    assert can_i(control_plane, token, "get", "secrets", "-n", watched)
    assert can_i(control_plane, token, "patch", "optimizedtransformers.kubeformer.dev/status", "-n", watched)
    assert not can_i(control_plane, token, "list", "secrets", "-n", watched)
    assert not can_i(control_plane, token, "get", "secrets", "-n", other)
    assert not can_i(control_plane, token, "get", "secrets", "-n", system)
    assert not can_i(control_plane, token, "list", "optimizedtransformers.kubeformer.dev", "-n", other)
    assert not can_i(control_plane, token, "list", "optimizedtransformers.kubeformer.dev", "--all-namespaces")
    assert not can_i(control_plane, token, "delete", "nodes")
    assert not can_i(control_plane, token, "create", "clusterrolebindings.rbac.authorization.k8s.io")
    assert not can_i(control_plane, token, "update", "deployments.apps", "-n", watched)
    assert not can_i(control_plane, token, "delete", "jobs.batch", "-n", watched)
    assert can_i(control_plane, token, "get", "customresourcedefinitions/scaledobjects.keda.sh")
    assert not can_i(control_plane, token, "get", "customresourcedefinitions/stages.kwok.x-k8s.io")
    assert not can_i(control_plane, token, "get", "namespaces", "-n", other)
    refused = kubectl_as(control_plane, token, "get", "secrets", "-n", other)
    assert refused.returncode != 0 and "forbidden" in refused.stderr, refused.stderr


def test_cluster_wide_peering_install_elects_one_replica_with_the_tokens_rights(
    control_plane, install, make_namespace, tmp_path
):
    """replicas: 2 -> a StatefulSet and a ClusterKopfPeering; two operators run here with the token and
    the priorities the pods' index labels give them: the higher one reconciles, the other stands by."""
    system, watched = make_namespace(labels=RESTRICTED), make_namespace(labels=RESTRICTED)
    release = install(system, "--set", "operator.replicas=2")
    env, args = installed_operator(control_plane, release, "statefulset")
    assert env["KUBEFORMER_PEERING"] == release.account and args == ["--liveness=http://0.0.0.0:8081/healthz"]
    control_plane.kubectl("get", "clusterkopfpeering", release.account)
    pods = yaml.safe_load(
        control_plane.kubectl(
            "get", "pods", "-n", system, "-l", "app.kubernetes.io/component=operator", "-o", "yaml"
        ).stdout
    )["items"]
    priorities = sorted(int(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"]) for p in pods)
    assert priorities == [0, 1]

    replicas = []
    try:
        # The leader first, as a rollout of a running StatefulSet would leave it; the follower, started
        # second, finds a live peer of higher priority and never acts.
        for priority in reversed(priorities):
            log = tmp_path / f"replica-{priority}.log"
            replicas.append(run_here(release, env, args, log, KUBEFORMER_PEERING_PRIORITY=str(priority)))
        # No Secret: the reconcile reads it (get), finds nothing, and writes status Pending.
        control_plane.apply(
            {
                "apiVersion": f"{names.GROUP}/{names.VERSION}",
                "kind": names.KIND,
                "metadata": {"name": "no-secret", "namespace": watched},
                "spec": {
                    "model": {"source": "hf://org/model", "task": "text-classification"},
                    "storage": {"uri": "s3://bucket/prefix", "secretRef": "missing"},
                },
            }
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = yaml.safe_load(
                control_plane.kubectl("get", "ot", "no-secret", "-n", watched, "-o", "yaml").stdout
            )
            if (got.get("status") or {}).get("phase") == "Pending":
                break
            time.sleep(0.5)
        assert (got.get("status") or {}).get("phase") == "Pending", got.get("status")
        leader, follower = (
            r.metrics().get("kubeformer_reconcile_duration_seconds_count", 0) for r in replicas
        )
        assert leader > 0 and follower == 0
        for replica in replicas:
            assert_no_refusals(replica)
    finally:
        for replica in replicas:
            replica.stop()

    token = release.token
    assert can_i(control_plane, token, "list", "optimizedtransformers.kubeformer.dev", "--all-namespaces")
    assert can_i(control_plane, token, "get", "secrets", "-n", watched)
    assert not can_i(control_plane, token, "list", "secrets", "--all-namespaces")
    assert can_i(control_plane, token, "patch", f"clusterkopfpeerings.kopf.dev/{release.account}")
    assert not can_i(control_plane, token, "patch", "clusterkopfpeerings.kopf.dev/someone-else")
    assert not can_i(control_plane, token, "list", "namespaces")  # kopf needs them only with --namespace
    assert not can_i(control_plane, token, "delete", "nodes")
    assert not can_i(control_plane, token, "create", "clusterroles.rbac.authorization.k8s.io")
    assert not can_i(control_plane, token, "impersonate", "serviceaccounts", "-n", watched)
