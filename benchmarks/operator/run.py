"""Operator benchmark: N OptimizedTransformers with cached artifacts applied at once on the kwok
control plane; time until all are Ready, API requests per object, operator peak RSS, reconcile p95.

    .venv/bin/python -m benchmarks.operator.run [--objects 200] [--timeout 900] [--quiet-minutes 5]

Everything is real except the kubelet (kwok): kube-apiserver with an audit log (which counts the
operator's requests by user agent: kubeformer-operator for ours, kopf for kopf's watches and
annotations), SeaweedFS, and `kubeformer-operator` as its own process. One tiny BERT artifact is
built by the real builder; its manifest and report are copied to each object's location (the
operator reads only those; kwok's pods never fetch the engine). With --quiet-minutes, then counts the
operator's API writes per second while nothing changes (the steady state: timer ticks only).
Writes results/<objects>[-quiet<minutes>][-churn<minutes>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import yaml

from kubeformer_builder import storage
from kubeformer_builder.config import Task
from kubeformer_builder.manifest import MANIFEST_NAME
from kubeformer_builder.pipeline import build
from kubeformer_builder.publish import REPORT_NAME
from kubeformer_operator import names
from kubeformer_operator.config import Settings
from kubeformer_operator.keys import engine_key
from kubeformer_operator.spec import parse_spec
from tests.cluster import kwok
from tests.cluster.build import ensure_binaries
from tests.cluster.controlplane import ControlPlane
from tests.fixtures.models import make_tiny_model
from tests.fixtures.operator import CRD_FILE, Operator
from tests.fixtures.s3 import S3Server, running_s3

HERE = Path(__file__).parent
NAMESPACE = "bench"


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def spec_for(model: Path, bucket: str, s3: S3Server) -> dict:
    return {
        "model": {"source": f"file://{model}", "task": "text-classification"},
        "optimization": {
            "precision": "fp32",
            "shapes": {"batch": {"min": 1, "opt": 2, "max": 4}, "sequence": {"min": 1, "opt": 16, "max": 32}},
            "calibration": {"samples": 16},
        },
        "storage": {"uri": f"s3://{bucket}/artifacts", "endpoint": s3.endpoint, "secretRef": "s3-creds"},
        # Small requests, so that the fake nodes' capacity never decides when a pod starts.
        "serving": {"resources": {"requests": {"cpu": "10m", "memory": "64Mi"}}},
    }


def stage_artifacts(spec: dict, count: int, root: Path, s3: S3Server) -> None:
    """Build once with the real builder; every object's location gets its report and manifest.

    The operator reads only those two files (kwok's pods never fetch the model), so the engine
    files are not copied: a thousand copies would not fit the test SeaweedFS.
    """
    os.environ.update(s3.env())
    artifact = root / "artifact"
    build(parse_spec(spec, "ot-0").engine, str(artifact))
    listing = root / "listing"
    listing.mkdir()
    for kept in (REPORT_NAME, MANIFEST_NAME):
        shutil.copy2(artifact / kept, listing / kept)
    for index in range(count):
        name = f"ot-{index}"
        key = engine_key(parse_spec(spec, name), Settings())
        uri = names.artifact_uri(spec["storage"]["uri"], NAMESPACE, name, key)
        storage.upload_dir(listing, uri, s3.endpoint)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def histogram_quantile(samples: dict[str, float], metric: str, quantile: float) -> float:
    buckets = sorted(
        (float(key.split('le="')[1].split('"')[0]), value)
        for key, value in samples.items()
        if key.startswith(f"{metric}_bucket")
    )
    total = buckets[-1][1]
    for bound, cumulative in buckets:
        if cumulative >= quantile * total:
            return bound
    return float("inf")


WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def count_requests(audit_log: Path, since: float, until: float = float("inf")) -> Counter:
    """Requests of the operator (ours and kopf's) between `since` and `until`, by client and verb."""
    counts: Counter = Counter()
    with audit_log.open() as lines:
        for line in lines:
            event = json.loads(line)
            agent = event.get("userAgent", "")
            client = (
                "kubeformer"
                if agent.startswith("kubeformer-operator")
                else "kopf"
                if agent.startswith("kopf")
                else None
            )
            if client and since <= _epoch(event["requestReceivedTimestamp"]) < until:
                counts[(client, event["verb"])] += 1
    return counts


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run(count: int, timeout: float, churn_minutes: int, quiet_minutes: float, requeue: float) -> dict:
    churned = churn_minutes * max(1, count // 10)  # objects created during the churn
    with tempfile.TemporaryDirectory(prefix="kubeformer-bench-operator-") as scratch:
        root = Path(scratch)
        plane = ControlPlane(root / "control-plane", ensure_binaries(print), audit=True).start()
        try:
            with running_s3(root / "s3") as s3:
                bucket = s3.new_bucket()
                model = make_tiny_model("bert", Task.TEXT_CLASSIFICATION, root / "model")
                spec = spec_for(model, bucket, s3)
                stage_artifacts(spec, count + churned, root, s3)
                plane.apply(yaml.safe_load(CRD_FILE.read_text()))
                plane.kubectl(
                    "wait", "--for=condition=Established", "crd/optimizedtransformers.kubeformer.dev"
                )
                plane.create_namespace(NAMESPACE)
                # kwok nodes hold 250 pods each; one more node than the serving pods need.
                plane.apply(*(kwok.fake_node(f"kwok-bench-{i}") for i in range(2 * count // 250 + 1)))
                secret = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "s3-creds", "namespace": NAMESPACE},
                    "stringData": s3.env(),
                }
                plane.apply(secret)
                operator = Operator(
                    plane._admin_kubeconfig,
                    root / "operator.log",
                    {"KUBEFORMER_REQUEUE_SECONDS": str(requeue)},
                )
                operator.start()
                try:
                    result = measure(plane, operator, spec, count, timeout)
                    result["requeue_seconds"] = requeue
                    if quiet_minutes:
                        result["quiet"] = quiet(plane, quiet_minutes)
                    if churn_minutes:
                        result["churn"] = churn(plane, spec, count, churn_minutes, timeout)
                        result["operator_peak_rss_mb"] = round(peak_rss_mb(operator.process.pid), 1)
                    return result
                finally:
                    operator.stop()
        finally:
            plane.stop()


def transformer(name: str, spec: dict) -> dict:
    return {
        "apiVersion": f"{names.GROUP}/{names.VERSION}",
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def phases(plane: ControlPlane) -> dict[str, str]:
    listed = json.loads(plane.kubectl("get", "ot", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    return {o["metadata"]["name"]: (o.get("status") or {}).get("phase", "") for o in listed}


def wait_all_ready(plane: ControlPlane, expected: set[str], began: float, timeout: float) -> dict[str, str]:
    seen: dict[str, str] = {}
    while time.time() - began < timeout:
        seen = phases(plane)
        if set(seen) == expected and all(phase == "Ready" for phase in seen.values()):
            break
        time.sleep(0.5)
    return seen


def measure(plane: ControlPlane, operator: Operator, spec: dict, count: int, timeout: float) -> dict:
    began = time.time()
    plane.apply(*(transformer(f"ot-{i}", spec) for i in range(count)))
    applied = time.time() - began
    first_ready = None
    while time.time() - began < timeout:
        ready = sum(1 for phase in phases(plane).values() if phase == "Ready")
        if ready and first_ready is None:
            first_ready = time.time() - began
        if ready == count:
            break
        time.sleep(0.5)
    all_ready = time.time() - began if ready == count else None
    time.sleep(2)  # let the last status writes land in the audit log
    samples = operator.metrics()
    requests = count_requests(plane.audit_log, began)
    total = sum(requests.values())
    return {
        "commit": commit(),
        "objects": count,
        "ready": ready,
        "apply_seconds": round(applied, 2),
        "first_ready_seconds": round(first_ready, 2) if first_ready else None,
        "all_ready_seconds": round(all_ready, 2) if all_ready else None,
        "operator_peak_rss_mb": round(peak_rss_mb(operator.process.pid), 1),
        "api_requests": {f"{client} {verb}": n for (client, verb), n in sorted(requests.items())},
        "api_requests_per_object": round(total / count, 2),
        "reconciles": samples.get("kubeformer_reconcile_duration_seconds_count"),
        "reconcile_p95_seconds_bucket": histogram_quantile(
            samples, "kubeformer_reconcile_duration_seconds", 0.95
        ),
    }


def quiet(plane: ControlPlane, minutes: float, settle: float = 30) -> dict:
    """The steady state: after `settle` seconds for the last rollout events, the operator's API writes
    per second over `minutes` in which nothing changes but its safety-net timer ticks."""
    time.sleep(settle)
    began = time.time()
    time.sleep(minutes * 60)
    ended = time.time()
    time.sleep(2)  # the audit log is written a little after the request
    requests = count_requests(plane.audit_log, began, ended)
    writes = {f"{c} {v}": n for (c, v), n in sorted(requests.items()) if v in WRITE_VERBS}
    seconds = ended - began
    return {
        "seconds": round(seconds, 1),
        "writes": writes,
        "writes_per_second": round(sum(writes.values()) / seconds, 3),
        "requests_per_second": round(sum(requests.values()) / seconds, 3),
        "api_requests": {f"{client} {verb}": n for (client, verb), n in sorted(requests.items())},
    }


def churn(plane: ControlPlane, spec: dict, count: int, minutes: int, timeout: float) -> dict:
    """Each minute: a serving change to 10% of the objects, 10% deleted and as many new ones created.

    Afterwards every remaining object must be Ready with its latest spec, and nothing of a deleted
    one may be left (its Deployment goes with it through the garbage collector).
    """
    live, deleted, next_index, step = [f"ot-{i}" for i in range(count)], [], count, max(1, count // 10)
    began = time.time()
    for minute in range(minutes):
        tick = time.time()
        updated, removed = live[:step], live[step : 2 * step]
        changed = {**spec, "serving": {**spec["serving"], "replicas": 1 + (minute + 1) % 2}}
        plane.apply(*(transformer(name, changed) for name in updated))
        plane.kubectl("delete", "ot", "-n", NAMESPACE, "--wait=false", *removed)
        created = [f"ot-{i}" for i in range(next_index, next_index + step)]
        next_index += step
        plane.apply(*(transformer(name, spec) for name in created))
        live = live[2 * step :] + updated + created
        deleted += removed
        time.sleep(max(0.0, 60 - (time.time() - tick)))
    settle = time.time()
    seen = wait_all_ready(plane, set(live), settle, timeout)
    stuck = sorted(name for name in live if seen.get(name) != "Ready")
    selector = ",".join(f"{k}={v}" for k, v in names.OWNED.items())
    deployments = json.loads(
        plane.kubectl("get", "deploy", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout
    )["items"]
    owners = {d["metadata"]["labels"].get(names.TRANSFORMER) for d in deployments}
    return {
        "minutes": minutes,
        "updated_per_minute": step,
        "deleted_per_minute": step,
        "created_per_minute": step,
        "objects_at_end": len(live),
        "stuck": stuck,
        "leftover_objects_of_deleted": sorted(set(deleted) & (owners | set(seen))),
        "settle_seconds": round(time.time() - settle, 2),
        "total_seconds": round(time.time() - began, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--quiet-minutes", type=float, default=0, help="then count API writes/s while nothing changes"
    )
    parser.add_argument("--churn-minutes", type=int, default=0, help="then churn 10%% per minute")
    parser.add_argument(
        "--requeue-seconds",
        type=float,
        default=Settings().requeue_seconds,
        help="the operator's safety-net timer (default: the operator's default)",
    )
    args = parser.parse_args()
    result = run(args.objects, args.timeout, args.churn_minutes, args.quiet_minutes, args.requeue_seconds)
    suffix = f"-quiet{args.quiet_minutes:g}" if args.quiet_minutes else ""
    suffix += f"-churn{args.churn_minutes}" if args.churn_minutes else ""
    out = HERE / "results" / f"{args.objects}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
