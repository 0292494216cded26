"""Generates helm/kubeformer/dashboards/kubeformer.json, the kubeformer Grafana dashboard.

    python -m monitoring.build_dashboard          # rewrite the committed JSON
    python -m monitoring.build_dashboard --check  # exit 1 if the committed JSON is stale

Every query reads raw metrics, not the chart's recording rules, so the dashboard works without the
PrometheusRule. Triton's labels are `model` and `version`; the PodMonitor adds `namespace`, `pod`,
`transformer` (the pod's kubeformer.dev/transformer label) and job="kubeformer-triton", and the same
PodMonitor scrapes the API front beside Triton (port "api") as job="kubeformer-api"; the operator's
ServiceMonitor sets job="kubeformer-operator". The latency quantiles need Triton started with
`--metrics-config=summary_latencies=true` (nv_inference_request_summary_us); without it those panels
are empty and "mean latency" still works.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

OUTPUT = Path(__file__).resolve().parents[1] / "helm" / "kubeformer" / "dashboards" / "kubeformer.json"
UID = "kubeformer-serving"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TRITON = 'job="kubeformer-triton", namespace=~"$namespace", model=~"$model"'
TRITON_PODS = 'job="kubeformer-triton", namespace=~"$namespace"'
OPERATOR = 'job="kubeformer-operator"'
FRONT = 'job="kubeformer-api", namespace=~"$namespace"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 12


def per_request(counter: str) -> str:
    """Microseconds of `counter` per successful request, per model, in milliseconds."""
    return (
        f"sum by (namespace, model) (rate({counter}{{{TRITON}}}[{RATE}])) / "
        f"sum by (namespace, model) (rate(nv_inference_request_success{{{TRITON}}}[{RATE}])) / 1000"
    )


def quantile(q: str) -> str:
    """Triton's per-pod summary quantile; the worst pod per model (quantiles do not average)."""
    return f'max by (namespace, model) (nv_inference_request_summary_us{{{TRITON}, quantile="{q}"}}) / 1000'


def front_quantile(q: str) -> str:
    buckets = f"kubeformer_front_request_duration_seconds_bucket{{{FRONT}}}"
    return f"histogram_quantile({q}, sum by (namespace, route, le) (rate({buckets}[{RATE}])))"


def build_quantile(q: str) -> str:
    buckets = f"kubeformer_build_duration_seconds_bucket{{{OPERATOR}}}"
    return f"histogram_quantile({q}, sum by (le) (rate({buckets}[1h])))"


SERVING = (
    Panel(
        "Throughput",
        "Successful requests per second, per model (an ensemble and the models it calls each count).",
        "reqps",
        (
            Query(
                f"sum by (namespace, model) (rate(nv_inference_request_success{{{TRITON}}}[{RATE}]))",
                "{{model}}",
            ),
        ),
    ),
    Panel(
        "Latency p50 / p95 / p99",
        "Request latency quantiles from Triton's summaries (needs summary_latencies=true), worst pod per "
        "model; mean: from the duration counters.",
        "ms",
        (
            Query(quantile("0.5"), "p50 {{model}}"),
            Query(quantile("0.95"), "p95 {{model}}"),
            Query(quantile("0.99"), "p99 {{model}}"),
            Query(per_request("nv_inference_request_duration_us"), "mean {{model}}"),
        ),
    ),
    Panel(
        "Queue vs compute time per request",
        "Time a request waits in the scheduler queue against time in the backend (input, infer, output).",
        "ms",
        (
            Query(per_request("nv_inference_queue_duration_us"), "queue {{model}}"),
            Query(per_request("nv_inference_compute_input_duration_us"), "compute input {{model}}"),
            Query(per_request("nv_inference_compute_infer_duration_us"), "compute infer {{model}}"),
            Query(per_request("nv_inference_compute_output_duration_us"), "compute output {{model}}"),
        ),
    ),
    Panel(
        "Batch size",
        "Inferences per model execution: how many requests dynamic batching put into one run.",
        "short",
        (
            Query(
                f"sum by (namespace, model) (rate(nv_inference_count{{{TRITON}}}[{RATE}])) / "
                f"sum by (namespace, model) (rate(nv_inference_exec_count{{{TRITON}}}[{RATE}]))",
                "{{model}}",
            ),
        ),
    ),
    Panel(
        "Errors",
        "Failed requests per second by model and reason (REJECTED, CANCELED, BACKEND, OTHER).",
        "reqps",
        (
            Query(
                "sum by (namespace, model, reason) "
                f"(rate(nv_inference_request_failure{{{TRITON}}}[{RATE}])) > 0",
                "{{model}} {{reason}}",
            ),
        ),
    ),
    Panel(
        "Replicas",
        "Triton pods scraped and up, per transformer; pending: requests waiting in Triton right now.",
        "short",
        (
            Query(f"sum by (namespace, transformer) (up{{{TRITON_PODS}}})", "up {{transformer}}"),
            Query(
                f"sum by (namespace, model) (nv_inference_pending_request_count{{{TRITON}}})",
                "pending {{model}}",
            ),
        ),
    ),
    Panel(
        "GPU utilization",
        "nv_gpu_utilization per pod and GPU (Triton exports it when it sees a GPU).",
        "percentunit",
        (
            Query(
                f"avg by (namespace, pod, gpu_uuid) (nv_gpu_utilization{{{TRITON_PODS}}})",
                "{{pod}} {{gpu_uuid}}",
            ),
        ),
        width=24,
    ),
)

FRONT_PANELS = (
    Panel(
        "API requests",
        "Requests the API front (OpenAI /v1/embeddings, /embed, /rerank, /predict) answered per second, "
        "by route and HTTP status (4xx: the client's fault, 503: Triton not ready).",
        "reqps",
        (
            Query(
                "sum by (namespace, route, status) "
                f"(rate(kubeformer_front_requests_total{{{FRONT}}}[{RATE}]))",
                "{{route}} {{status}}",
            ),
        ),
        width=8,
    ),
    Panel(
        "API latency p50 / p95",
        "Time from request to response in the API front, Triton's time included, by route.",
        "s",
        (Query(front_quantile("0.5"), "p50 {{route}}"), Query(front_quantile("0.95"), "p95 {{route}}")),
        width=8,
    ),
    Panel(
        "API errors",
        "Refused (4xx) and failed (5xx) requests per second, by route and status.",
        "reqps",
        (
            Query(
                "sum by (namespace, route, status) "
                f'(rate(kubeformer_front_requests_total{{{FRONT}, status=~"[45].."}}[{RATE}])) > 0',
                "{{route}} {{status}}",
            ),
        ),
        width=8,
    ),
)

OPERATOR_PANELS = (
    Panel(
        "Build results",
        "Build Jobs that finished in the last hour, by result (kubeformer_builds_total).",
        "short",
        (Query(f"sum by (result) (increase(kubeformer_builds_total{{{OPERATOR}}}[1h]))", "{{result}}"),),
        width=8,
    ),
    Panel(
        "Build duration",
        "Build Job duration quantiles over the last hour (kubeformer_build_duration_seconds).",
        "s",
        (Query(build_quantile("0.5"), "p50"), Query(build_quantile("0.95"), "p95")),
        width=8,
    ),
    Panel(
        "Objects by phase",
        "OptimizedTransformer objects per phase; cache hits and jobs created per hour.",
        "short",
        (
            Query(f"sum by (phase) (kubeformer_objects{{{OPERATOR}}})", "{{phase}}"),
            Query(f"sum(increase(kubeformer_cache_hits_total{{{OPERATOR}}}[1h]))", "cache hits / h"),
            Query(
                f"sum(increase(kubeformer_build_jobs_created_total{{{OPERATOR}}}[1h]))", "jobs created / h"
            ),
        ),
        width=8,
    ),
    Panel(
        "Reconcile duration p95",
        "95th percentile time to reconcile one object.",
        "s",
        (
            Query(
                "histogram_quantile(0.95, sum by (le) "
                f"(rate(kubeformer_reconcile_duration_seconds_bucket{{{OPERATOR}}}[{RATE}])))",
                "p95",
            ),
        ),
    ),
    Panel(
        "Kubernetes API requests",
        "Requests the operator makes to the API server, by verb.",
        "reqps",
        (Query(f"sum by (verb) (rate(kubeformer_api_requests_total{{{OPERATOR}}}[{RATE}]))", "{{verb}}"),),
    ),
)


def panel(spec: Panel) -> timeseries.Panel:
    builder = (
        timeseries.Panel()
        .title(spec.title)
        .description(spec.description)
        .unit(spec.unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(spec.width)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max"])
        )
    )
    for index, query in enumerate(spec.queries):
        builder = builder.with_target(
            prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + index))
        )
    return builder


def variable(name: str, label: str, query: str) -> gd.QueryVariable:
    return (
        gd.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def build() -> dict:
    board = (
        gd.Dashboard("kubeformer")
        .uid(UID)
        .description("Triton serving (kubeformer transformers) and the kubeformer operator's builds.")
        .tags(["kubeformer", "triton"])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(gd.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            variable(
                "namespace",
                "Namespace",
                'label_values(nv_inference_count{job="kubeformer-triton"}, namespace)',
            )
        )
        .with_variable(
            variable(
                "model",
                "Model",
                'label_values(nv_inference_count{job="kubeformer-triton", namespace=~"$namespace"}, model)',
            )
        )
        .with_row(gd.Row("Serving (Triton)").id(1))
    )
    next_id = 2
    for index, spec in enumerate(SERVING):
        board = board.with_panel(panel(spec).id(next_id + index))
    next_id += len(SERVING)
    for title, panels in (("API front", FRONT_PANELS), ("Builds (operator)", OPERATOR_PANELS)):
        board = board.with_row(gd.Row(title).id(next_id))
        for index, spec in enumerate(panels):
            board = board.with_panel(panel(spec).id(next_id + 1 + index))
        next_id += 1 + len(panels)
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def queries(dashboard: dict) -> list[str]:
    """Every PromQL expression in a dashboard (panel targets and query variables)."""
    found = [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", []) if "expr" in t]
    for row in dashboard.get("panels", []):
        found += [t["expr"] for p in row.get("panels", []) for t in p.get("targets", []) if "expr" in t]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python -m monitoring.build_dashboard", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
