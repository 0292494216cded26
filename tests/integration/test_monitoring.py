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
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml

from kubeformer_builder.config import Task
from kubeformer_builder.serving import tritonserver
from kubeformer_builder.serving.serve import ServeConfig, serve
from kubeformer_builder.serving.tritonserver import Endpoints
from monitoring import build_dashboard
from tests.fixtures.processes import free_port, start, stop, wait_until
from tests.fixtures.triton import free_ports

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "kubeformer"
RULES = CHART / "dashboards" / "prometheus-rules.yaml"
DASHBOARD = CHART / "dashboards" / "kubeformer.json"
HELM = Path.home() / ".cache" / "kubeformer" / "helm-v3.21.4" / "bin" / "helm"
# What Triton needs for latency quantiles: summaries of request/queue/compute durations.
SUMMARY_FLAG = "--metrics-config=summary_latencies=true"
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


def grafana_free(expr: str) -> str:
    """A dashboard query as Grafana sends it with every namespace and model selected."""
    return expr.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$model", ".*")


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
            {
                "eval_time": "10m",
                "expr": "namespace_model:kubeformer_triton_request_latency_seconds:p50",
                "exp_samples": [{"labels": _labels, "value": 0.03}],
            }
            for _labels in [
                'namespace_model:kubeformer_triton_request_latency_seconds:p50{model="cls", namespace="serving"}'
            ]
        ]
        + [
            {
                "eval_time": "3m",
                "expr": "namespace_model:kubeformer_triton_request_latency_seconds:p95",
                "exp_samples": [
                    {
                        "labels": 'namespace_model:kubeformer_triton_request_latency_seconds:p95{model="cls", namespace="serving"}',
                        "value": 0.08,
                    }
                ],
            },
            {
                "eval_time": "10m",
                "expr": "namespace_model:kubeformer_triton_request_latency_seconds:p95",
                "exp_samples": [
                    {
                        "labels": 'namespace_model:kubeformer_triton_request_latency_seconds:p95{model="cls", namespace="serving"}',
                        "value": 0.25,
                    }
                ],
            },
            {
                "eval_time": "10m",
                "expr": "namespace_model:kubeformer_triton_request_latency_seconds:p99",
                "exp_samples": [
                    {
                        "labels": 'namespace_model:kubeformer_triton_request_latency_seconds:p99{model="cls", namespace="serving"}',
                        "value": 0.4,
                    }
                ],
            },
            {
                "eval_time": "10m",
                "expr": "namespace_model:kubeformer_triton_requests:rate5m",
                "exp_samples": [
                    {
                        "labels": 'namespace_model:kubeformer_triton_requests:rate5m{model="cls", namespace="serving"}',
                        "value": 1,
                    }
                ],
            },
            {
                "eval_time": "10m",
                "expr": "round(namespace_model:kubeformer_triton_request_latency_seconds:mean5m, 0.001)",  # rate() extrapolation: 0.5000000000000001
                "exp_samples": [
                    {
                        "labels": '{model="cls", namespace="serving"}',
                        "value": 0.5,
                    }
                ],
            },
            {
                "eval_time": "10m",
                "expr": "round(namespace_model:kubeformer_triton_queue_seconds_per_request:mean5m, 0.001)",  # rate() extrapolation: 0.5000000000000001
                "exp_samples": [
                    {
                        "labels": '{model="cls", namespace="serving"}',
                        "value": 0.25,
                    }
                ],
            },
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
                            "description": "p95 latency of model cls in serving is 250 ms (threshold 100 ms).",
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
                            "description": f"{NAMESPACE}/cls has no Triton pod answering; it served in the last hour.",
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
    rendered = subprocess.run(
        [str(HELM), "template", "rel", str(CHART), "--show-only", "templates/monitoring/prometheusrule.yaml",
         "--show-only", "templates/monitoring/podmonitor.yaml", "--show-only", "templates/monitoring/servicemonitor.yaml",
         "--show-only", "templates/monitoring/dashboard-configmap.yaml",
         "--set", enable, "--set", "monitoring.prometheusRule.p95LatencyThresholdMs=250"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    objects = {o["kind"]: o for o in yaml.safe_load_all(rendered) if o}
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
    assert "monitoring.coreos.com" not in off and "grafana_dashboard" not in off
