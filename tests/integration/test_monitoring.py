"""The chart's monitoring: rules checked and unit-tested by promtool, every dashboard query parsed, and
a real Prometheus scraping a real Triton under load and the operator's metrics, where the dashboard's
queries and the recording rules return numbers.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from kubeformer_builder.serving.tritonserver import Endpoints
from monitoring import build_dashboard
from tests.fixtures.processes import free_port, start, stop, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "kubeformer"
RULES = CHART / "dashboards" / "prometheus-rules.yaml"
DASHBOARD = CHART / "dashboards" / "kubeformer.json"
# The helm that tests/fixtures/helm.py builds (newest cached), else one on PATH; the test skips without.
HELM = next(
    iter(sorted((Path.home() / ".cache" / "kubeformer").glob("helm-v*/bin/helm"), reverse=True)),
    Path(shutil.which("helm") or "/nonexistent/helm"),
)
# What Triton needs for latency quantiles: summaries of request/queue/compute durations.
NAMESPACE = "serving"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def rule_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())["monitoring"]["prometheusRule"]


def rendered_rules(values: dict | None = None, interval: str | None = None) -> str:
    """The PrometheusRule's spec as the template renders it: placeholders replaced from the values."""
    values = rule_values() if values is None else values
    text = PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), RULES.read_text()
    )
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not PLACEHOLDER.search(code), f"unreplaced placeholder: {PLACEHOLDER.search(code).group(0)}"
    if interval is not None:
        rules = yaml.safe_load(text)
        for group in rules["groups"]:
            group["interval"] = interval
        text = yaml.safe_dump(rules, sort_keys=False)
    return text


def grafana_free(expr: str, rate_interval: str = "1m") -> str:
    """A dashboard query as Grafana sends it with every namespace and model selected."""
    return expr.replace("$__rate_interval", rate_interval).replace("$namespace", ".*").replace("$model", ".*")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def timeseries_panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] == "timeseries"]


def panel_exprs(title: str) -> list[str]:
    (panel,) = (p for p in timeseries_panels() if p["title"] == title)
    return [grafana_free(t["expr"]) for t in panel["targets"]]


# ---------------------------------------------------------------- static checks


def test_committed_dashboard_is_the_generators_output():
    assert DASHBOARD.read_text() == build_dashboard.render(), "run: python -m monitoring.build_dashboard"
    titles = [p["title"] for p in timeseries_panels()]
    assert titles[:7] == [
        "Throughput",
        "Latency p50 / p95 / p99",
        "Queue vs compute time per request",
        "Batch size",
        "Errors",
        "Replicas",
        "GPU utilization",
    ]
    assert {"Build results", "Build duration"} <= set(titles)


def test_rules_pass_promtool_check(promtool, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(rendered_rules())
    output = promtool("check", "rules", str(rules)).stdout
    assert "SUCCESS" in output
    names = {
        r.get("alert") or r.get("record")
        for g in yaml.safe_load(rules.read_text())["groups"]
        for r in g["rules"]
    }
    assert {
        "KubeformerBuildFailed",
        "KubeformerP95LatencyHigh",
        "KubeformerNoReadyReplicas",
        "KubeformerQueueTimeGrowing",
        "namespace_model:kubeformer_triton_request_latency_seconds:p50",
        "namespace_model:kubeformer_triton_request_latency_seconds:p95",
        "namespace_model:kubeformer_triton_request_latency_seconds:p99",
    } <= names


def summary(pod: str, q: str, values: str) -> dict:
    labels = f'job="kubeformer-triton", namespace="{NAMESPACE}", pod="{pod}", model="cls", version="1"'
    return {"series": f'nv_inference_request_summary_us{{{labels}, quantile="{q}"}}', "values": values}


def triton_counter(name: str, values: str, pod: str = "cls-a") -> dict:
    labels = f'job="kubeformer-triton", namespace="{NAMESPACE}", pod="{pod}", model="cls", version="1"'
    return {"series": f"{name}{{{labels}}}", "values": values}


def up(pod: str, values: str) -> dict:
    return {
        "series": f'up{{job="kubeformer-triton", namespace="{NAMESPACE}", pod="{pod}", transformer="cls"}}',
        "values": values,
    }


MODEL = {"namespace": NAMESPACE, "model": "cls"}


def recorded(name: str, at: str, value: float, rounded: bool = False) -> dict:
    """A promql_expr_test: the recording rule namespace_model:kubeformer_triton_<name> of model cls."""
    rule = f"namespace_model:kubeformer_triton_{name}"
    labels = f'{{model="cls", namespace="{NAMESPACE}"}}'
    if rounded:
        return {
            "eval_time": at,
            "expr": f"round({rule}, 0.001)",
            "exp_samples": [{"labels": labels, "value": value}],
        }
    return {"eval_time": at, "expr": rule, "exp_samples": [{"labels": rule + labels, "value": value}]}


UNIT_TESTS = [
    {  # a build fails at minute 10: the alert fires at once, and clears 15 minutes later
        "interval": "1m",
        "input_series": [
            {
                "series": 'kubeformer_builds_total{job="kubeformer-operator", result="succeeded"}',
                "values": "0+1x40",
            },
            {
                "series": 'kubeformer_builds_total{job="kubeformer-operator", result="failed"}',
                "values": "0x10 1x30",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "KubeformerBuildFailed", "exp_alerts": []},
            {
                "eval_time": "12m",
                "alertname": "KubeformerBuildFailed",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", "job": "kubeformer-operator"},
                        "exp_annotations": {
                            "summary": "A kubeformer build Job failed",
                            "description": "1 build(s) failed in the last 15 minutes; see the Failed "
                            "OptimizedTransformer's status and its build Job's logs.",
                        },
                    }
                ],
            },
            {"eval_time": "35m", "alertname": "KubeformerBuildFailed", "exp_alerts": []},
        ],
    },
    {  # p95 of one pod jumps from 50 ms to 250 ms at minute 5; the other pod stays at 80 ms
        "interval": "1m",
        "input_series": [
            summary("cls-a", "0.5", "20000x30"),
            summary("cls-a", "0.95", "50000x4 250000x25"),
            summary("cls-a", "0.99", "400000x30"),
            summary("cls-b", "0.5", "30000x30"),
            summary("cls-b", "0.95", "80000x30"),
            summary("cls-b", "0.99", "100000x30"),
            # 1 request/s, 0.5 s each, 0.25 s of it queued
            triton_counter("nv_inference_request_success", "0+60x30"),
            triton_counter("nv_inference_request_duration_us", "0+30000000x30"),
            triton_counter("nv_inference_queue_duration_us", "0+15000000x30"),
        ],
        "promql_expr_test": [
            recorded("request_latency_seconds:p50", "10m", 0.03),
            recorded("request_latency_seconds:p95", "3m", 0.08),  # before the jump: the other pod's
            recorded("request_latency_seconds:p95", "10m", 0.25),  # the worst pod's
            recorded("request_latency_seconds:p99", "10m", 0.4),
            recorded("requests:rate5m", "10m", 1),
            # round(): rate() extrapolation gives 0.5000000000000001
            recorded("request_latency_seconds:mean5m", "10m", 0.5, rounded=True),
            recorded("queue_seconds_per_request:mean5m", "10m", 0.25, rounded=True),
        ],
        "alert_rule_test": [
            {
                "eval_time": "8m",
                "alertname": "KubeformerP95LatencyHigh",
                "exp_alerts": [],
            },  # pending (for: 5m)
            {
                "eval_time": "11m",
                "alertname": "KubeformerP95LatencyHigh",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", **MODEL},
                        "exp_annotations": {
                            "summary": "Triton p95 latency above 100 ms",
                            "description": "p95 latency of model cls in serving is 250 ms "
                            "(threshold 100 ms).",
                        },
                    }
                ],
            },
        ],
    },
    {  # both pods up for 20 minutes, then both down: the alert fires 5 minutes later
        "interval": "1m",
        "input_series": [up("cls-a", "1x20 0x20"), up("cls-b", "1x10 0x30")],
        "alert_rule_test": [
            {"eval_time": "15m", "alertname": "KubeformerNoReadyReplicas", "exp_alerts": []},
            {"eval_time": "23m", "alertname": "KubeformerNoReadyReplicas", "exp_alerts": []},
            {
                "eval_time": "27m",
                "alertname": "KubeformerNoReadyReplicas",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "critical", "namespace": NAMESPACE, "transformer": "cls"},
                        "exp_annotations": {
                            "summary": "No Triton replica of a kubeformer transformer is up",
                            "description": f"{NAMESPACE}/cls has no Triton pod answering; "
                            "it served in the last hour.",
                        },
                    }
                ],
            },
        ],
    },
    {  # 1 req/s at 10 ms queue time for an hour, then 100 ms: the queue alert fires after 10 minutes
        "interval": "1m",
        "input_series": [
            triton_counter("nv_inference_request_success", "0+60x100"),
            triton_counter("nv_inference_queue_duration_us", "0+600000x60 36600000+6000000x40"),
        ],
        "alert_rule_test": [
            {"eval_time": "60m", "alertname": "KubeformerQueueTimeGrowing", "exp_alerts": []},
            {"eval_time": "68m", "alertname": "KubeformerQueueTimeGrowing", "exp_alerts": []},
            {
                "eval_time": "80m",
                "alertname": "KubeformerQueueTimeGrowing",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", **MODEL},
                        "exp_annotations": {
                            "summary": "Triton queue time is growing",
                            "description": "Requests to cls in serving wait 100ms in the queue, over 2x the "
                            "last hour's mean: add replicas or batch more.",
                        },
                    }
                ],
            },
        ],
    },
]


def test_rules_pass_promtool_unit_tests(promtool, tmp_path):
    (tmp_path / "rules.yaml").write_text(rendered_rules(interval="1m"))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": UNIT_TESTS}
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    output = promtool("test", "rules", str(tmp_path / "rules_test.yaml")).stdout
    assert "SUCCESS" in output


def test_every_dashboard_query_parses(promtool, tmp_path):
    exprs = [grafana_free(e) for e in build_dashboard.queries(dashboard())]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":  # label_values(<selector>, label): the selector must parse
            selector = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]).group(1)
            exprs.append(grafana_free(selector))
    assert len(exprs) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(rules, width=1000))
    assert "SUCCESS" in promtool("check", "rules", str(tmp_path / "queries.yaml")).stdout


@pytest.mark.skipif(not HELM.exists(), reason="no helm binary built (tests/fixtures/helm.py builds one)")
def test_chart_renders_the_monitoring_objects(tmp_path):
    enable = ",".join(
        f"monitoring.{key}.enabled=true"
        for key in ("serviceMonitor", "tritonMonitor", "prometheusRule", "dashboard")
    )
    templates = ("prometheusrule", "podmonitor", "servicemonitor", "dashboard-configmap")
    only = [arg for t in templates for arg in ("--show-only", f"templates/monitoring/{t}.yaml")]
    threshold = "monitoring.prometheusRule.p95LatencyThresholdMs=250"
    selected = "monitoring.labels.release=kube-prometheus-stack"  # what its default Prometheus selects
    values = ["--set", enable, "--set", threshold, "--set", selected]
    rendered = subprocess.run(
        [str(HELM), "template", "rel", str(CHART), *only, *values],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    objects = {o["kind"]: o for o in yaml.safe_load_all(rendered) if o}
    for kind in ("PrometheusRule", "PodMonitor", "ServiceMonitor"):
        assert objects[kind]["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    assert objects["PrometheusRule"]["spec"] == yaml.safe_load(
        rendered_rules({**rule_values(), "p95LatencyThresholdMs": 250})
    )
    configmap = objects["ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["kubeformer.json"]) == dashboard()
    pods = objects["PodMonitor"]["spec"]
    assert pods["namespaceSelector"] == {"any": True}
    assert pods["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "kubeformer",
        "app.kubernetes.io/component": "triton",
    }
    assert pods["podMetricsEndpoints"][0]["port"] == "metrics"
    service = objects["ServiceMonitor"]["spec"]
    assert service["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert service["endpoints"][0]["port"] == "metrics"
    off = subprocess.run(
        [str(HELM), "template", "rel", str(CHART)], capture_output=True, text=True, check=True
    ).stdout
    kinds = {(o["apiVersion"], o["kind"]) for o in yaml.safe_load_all(off) if o}
    assert not any(api.startswith("monitoring.coreos.com/") for api, _ in kinds)
    assert "grafana_dashboard" not in off


# ---------------------------------------------------------------- live: Prometheus, Triton, operator metrics

ERROR_EVERY = 100
WORDS = str.split(
    "the service answered quickly and staff were kind while a long queue formed near the station"
)
# The operator's real metrics module in its own process: builds finish while Prometheus scrapes it.
OPERATOR_METRICS = """
import itertools, sys, time
from kubeformer_operator import metrics
metrics.serve(int(sys.argv[1]))
for name, phase in [("a", "Ready"), ("b", "Ready"), ("c", "Building"), ("d", "Failed")]:
    metrics.set_phase("serving", name, phase)
for tick in itertools.count():
    metrics.RECONCILE_SECONDS.observe(0.02 + 0.01 * (tick % 5))
    metrics.api_request("get" if tick % 3 else "patch")
    if tick % 4 == 0:
        metrics.job_created()
        metrics.build_finished("failed" if tick % 20 == 0 else "succeeded", 60 + 40 * (tick % 7))
    if tick % 6 == 0:
        metrics.cache_hit()
    time.sleep(0.5)
"""


@pytest.fixture(scope="module")
def summary_triton(triton):
    """The session's `kubeformer serve` (tests/fixtures/triton.py), whose Triton exports latency
    summaries (--metrics-config=summary_latencies=true) as the cluster's does; "cls" is a tiny BERT."""
    return triton.endpoints


@pytest.fixture(scope="module")
def operator_metrics(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("operator-metrics") / "metrics.log"
    process = start([sys.executable, "-c", OPERATOR_METRICS, str(port)], log)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(
        lambda: b"kubeformer_builds_total" in urllib.request.urlopen(url, timeout=2).read(),
        30,
        "metrics",
        log,
    )
    yield port
    stop(process)


def load(endpoints: Endpoints, seconds: float, minimum: int) -> int:
    """Closed-loop load in stages of 1, 4 and 8 clients; at least `minimum` requests in `seconds`.

    One request in ERROR_EVERY is an empty text, which the tokenizer refuses (a failure to count).
    """
    sent, lock, failures = [0], threading.Lock(), []
    deadline = time.monotonic() + seconds

    def client(stage_end: float, seed: int) -> None:
        rng = random.Random(seed)
        http = httpclient.InferenceServerClient(f"{endpoints.host}:{endpoints.http_port}")
        try:
            while time.monotonic() < stage_end or (time.monotonic() >= deadline and sent[0] < minimum):
                bad = rng.randrange(ERROR_EVERY) == 0
                text = "   " if bad else " ".join(rng.choices(WORDS, k=rng.randint(3, 60)))
                tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
                try:
                    http.infer("cls", [tensor])
                except InferenceServerException:
                    if not bad:
                        raise
                with lock:
                    sent[0] += 1
        except Exception as error:  # handed to the test below
            failures.append(error)
        finally:
            http.close()

    stages = (1, 4, 8)
    for index, clients in enumerate(stages):
        stage_end = time.monotonic() + seconds / len(stages)
        threads = [threading.Thread(target=client, args=(stage_end, index * 10 + i)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    return sent[0]


def values(result: list[dict]) -> dict[str, float]:
    """{labels (without __name__) as sorted JSON: value} of an instant query's result."""
    labels = ({k: v for k, v in r["metric"].items() if k != "__name__"} for r in result)
    return {json.dumps(m, sort_keys=True): float(r["value"][1]) for m, r in zip(labels, result, strict=True)}


def test_live_prometheus_scrapes_triton_and_operator(
    summary_triton, operator_metrics, prometheus_server, tmp_path
):
    rules = tmp_path / "rules.yaml"
    rules.write_text(rendered_rules(interval="1s"))
    labels = {"namespace": NAMESPACE, "pod": "cls-0", "transformer": "cls"}  # what the PodMonitor adds
    prometheus = prometheus_server(
        [
            {
                "job_name": "kubeformer-triton",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{summary_triton.metrics_port}"], "labels": labels}
                ],
            },
            {
                "job_name": "kubeformer-operator",
                "static_configs": [{"targets": [f"127.0.0.1:{operator_metrics}"]}],
            },
        ],
        [rules],
    )
    wait_until(lambda: set(prometheus.targets_up().values()) == {"up"}, 30, "targets up", prometheus.log)
    started = time.time()
    seconds = float(os.environ.get("KUBEFORMER_MONITORING_LOAD_S", "12"))
    sent = load(summary_triton, seconds, minimum=300)
    assert sent >= 300
    time.sleep(3)  # two more scrapes and rule evaluations

    throughput = values(prometheus.query(panel_exprs("Throughput")[0]))
    cls = json.dumps({"model": "cls", "namespace": NAMESPACE}, sort_keys=True)
    assert throughput[cls] > 1, throughput
    p50, p95, p99, mean = (values(prometheus.query(e))[cls] for e in panel_exprs("Latency p50 / p95 / p99"))
    assert 0 < p50 <= p95 <= p99 < 10_000, (p50, p95, p99)
    assert 0 < mean < 10_000
    queue, *compute = (
        values(prometheus.query(e))[cls] for e in panel_exprs("Queue vs compute time per request")
    )
    assert queue >= 0 and all(c > 0 for c in compute)
    errors = values(prometheus.query(panel_exprs("Errors")[0]))
    assert any(v > 0 for k, v in errors.items() if '"model": "cls"' in k), errors
    (batch,) = (values(prometheus.query(e))[cls] for e in panel_exprs("Batch size"))
    assert batch >= 1
    replicas = values(prometheus.query(panel_exprs("Replicas")[0]))
    assert list(replicas.values()) == [1.0]
    builds = values(prometheus.query(panel_exprs("Build results")[0]))
    assert builds[json.dumps({"result": "succeeded"})] > 0, builds
    build_p50, build_p95 = (
        next(iter(values(prometheus.query(e)).values())) for e in panel_exprs("Build duration")
    )
    assert 30 <= build_p50 <= build_p95 <= 600
    for expr in build_dashboard.queries(dashboard()):  # every query runs (GPU and errors may be empty here)
        prometheus.query(grafana_free(expr))

    recorded_p95 = values(prometheus.query("namespace_model:kubeformer_triton_request_latency_seconds:p95"))
    assert 0 < recorded_p95[cls] < 10
    assert all(rule["health"] == "ok" for rule in prometheus.rules()), prometheus.rules()

    picture = os.environ.get("KUBEFORMER_DASHBOARD_PNG")
    if picture:
        from monitoring.plot_dashboard import plot

        end = time.time()
        exprs = {t["expr"] for p in timeseries_panels() for t in p["targets"]}
        # Grafana's $__rate_interval for a 1 s scrape at this range is a few seconds.
        results = {e: prometheus.query_range(grafana_free(e, "5s"), started - 5, end, 1) for e in exprs}
        plot(timeseries_panels(), results, started, REPO / picture)
        print(f"{sent} requests in {end - started:.0f}s; wrote {picture}")


def test_live_prometheus_scrapes_the_real_operator(control_plane, operator, namespace, prometheus_server):
    """`kubeformer-operator` against the test control plane: one object to reconcile, and the operator
    panels' queries return its metrics through the job name the ServiceMonitor sets."""
    from kubernetes import client

    from kubeformer_operator import names
    from tests.fixtures.specs import make_transformer

    prometheus = prometheus_server(
        [
            {
                "job_name": "kubeformer-operator",
                "static_configs": [{"targets": [f"127.0.0.1:{operator.metrics_port}"]}],
            }
        ]
    )
    wait_until(
        lambda: prometheus.query('up{job="kubeformer-operator"} == 1'), 30, "operator scraped", prometheus.log
    )
    body = make_transformer("watched", namespace)  # reconciled while Prometheus scrapes
    for key in ("uid", "generation"):
        del body["metadata"][key]
    custom = client.CustomObjectsApi(control_plane.api_client())
    custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, body)

    def reconcile_p95() -> float:
        (value,) = values(prometheus.query(panel_exprs("Reconcile duration p95")[0])).values()
        return value

    wait_until(lambda: math.isfinite(reconcile_p95()), 60, "a reconcile seen by Prometheus", operator.log)
    assert 0 < reconcile_p95() < 30
    phases = values(prometheus.query(panel_exprs("Objects by phase")[0]))
    assert sum(phases.values()) >= 1, phases
    assert set(phases) == {
        json.dumps({"phase": p}) for p in ("Pending", "Building", "Deploying", "Ready", "Failed")
    }
    requests = values(prometheus.query(panel_exprs("Kubernetes API requests")[0]))
    assert requests and all(math.isfinite(v) for v in requests.values()), requests
