"""kubeformer (Triton + dynamic batching) against a PyTorch pipeline behind FastAPI, same model and run;
and the cost of kubeformer's API front: the same texts through OpenAI /v1/embeddings (the front, over
gRPC or HTTP to Triton) and through Triton's v2 route directly, next to infinity-emb serving the same
model on the same OpenAI route.

Closed-loop load: at each concurrency C, C client threads each send one request, wait for the answer,
send the next, until the request budget or the time limit is spent. Every server gets the same texts
(a fixed, seeded corpus of mixed lengths), the same HTTP/JSON client code and the same machine, one
server under load at a time. Reported: req/s and p50/p95/p99 latency per server and concurrency,
the ratios between them, and Triton's statistics showing how many requests each execution batched.

    python benchmarks/serving/bench_serving.py --artifact out/minilm --model-dir MODEL_DIR \
        --systems kubeformer,api,api-http,infinity,pytorch --infinity ~/.cache/kubeformer/infinity-venv
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kubeformer_builder.manifest import REPOSITORY_DIR, load_manifest
from kubeformer_builder.serving.api.server import ApiServer
from kubeformer_builder.serving.api.settings import ApiSettings, Listen
from kubeformer_builder.serving.overrides import InstanceKind, Overrides
from kubeformer_builder.serving.serve import ServeConfig, serve
from kubeformer_builder.serving.tritonserver import Endpoints

BASELINE = Path(__file__).with_name("baseline_server.py")
WORDS = str.split(
    "the service answered quickly and staff were kind while a long queue formed outside near harbour "
    "station where trains from the north arrive late every winter because snow covers tracks and "
    "engineers must clear them by hand before dawn so passengers wait with coffee reading news about "
    "markets elections football weather and new restaurants opening downtown this week"
)


def corpus(size: int, seed: int = 0) -> list[str]:
    """Seeded texts of 3 to 120 words, skewed short as real traffic is."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=min(120, 3 + int(rng.expovariate(1 / 25))))) for _ in range(size)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JsonClient:
    """Keep-alive HTTP/JSON client; one per load thread, identical for both servers."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: dict) -> dict:
        self.connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        reply = self.connection.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"POST {path}: {reply.status} {data[:200]!r}")
        return json.loads(data)

    def get(self, path: str) -> dict:
        self.connection.request("GET", path)
        reply = self.connection.getresponse()
        return json.loads(reply.read())

    def close(self) -> None:
        self.connection.close()


def triton_request(model: str) -> Callable[[JsonClient, str], dict]:
    def send(client: JsonClient, text: str) -> dict:
        body = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}
        return client.post(f"/v2/models/{model}/infer", body)

    return send


def baseline_request(client: JsonClient, text: str) -> dict:
    return client.post("/predict", {"text": text})


def openai_request(path: str, model: str) -> Callable[[JsonClient, str], dict]:
    """One text per request through an OpenAI embeddings route (the front's or infinity's)."""

    def send(client: JsonClient, text: str) -> dict:
        return client.post(path, {"model": model, "input": [text], "encoding_format": "float"})

    return send


def closed_loop(port, send, texts, concurrency, requests, time_limit_s) -> tuple[list[float], float]:
    """Latencies (seconds) of every completed request and the wall time of the whole run."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.perf_counter() + time_limit_s

    def worker() -> None:
        client = JsonClient(port)
        try:
            while time.perf_counter() < deadline:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                start = time.perf_counter()
                send(client, texts[index % len(texts)])
                with lock:
                    latencies.append(time.perf_counter() - start)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - began


def summarize(latencies: list[float], elapsed: float) -> dict:
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} was not ready after {timeout_s:.0f}s")


def start_triton(
    artifact: Path, overrides: Overrides, log_path: Path, api: Listen
) -> tuple[Endpoints, Callable[[], None]]:
    """`kubeformer serve` of the artifact: Triton, and the API front beside it (over gRPC) at `api`."""
    endpoints = Endpoints("127.0.0.1", free_port(), free_port(), free_port())
    stop, ready, failures = threading.Event(), threading.Event(), []
    log = log_path.open("w")

    def run() -> None:
        try:
            serve(
                ServeConfig((str(artifact),), endpoints, overrides, api=api),
                stop,
                lambda line: print(line, file=log),
                lambda _: ready.set(),
            )
        except BaseException as error:  # reported below, in the main thread
            failures.append(error)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(600)
    if failures or not ready.is_set():
        raise RuntimeError(
            f"kubeformer serve failed: {failures[0] if failures else 'timeout'} (log {log_path})"
        )

    def shutdown() -> None:
        stop.set()
        thread.join(60)
        log.close()

    return endpoints, shutdown


def start_baseline(model_dir: str, task: str) -> tuple[int, subprocess.Popen]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(BASELINE), model_dir, task, str(port)])
    wait_until(lambda: JsonClient(port).post("/predict", {"text": "warm up"}) is not None, 300, "baseline")
    return port, process


def start_infinity(venv: Path, model_dir: str, name: str, log_path: Path) -> tuple[int, subprocess.Popen]:
    """infinity-emb (its own venv: it needs transformers 4) serving `model_dir` as `name` on torch, CPU."""
    port = free_port()
    command = [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", model_dir, "--served-model-name", name]
    command += ["--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    send = openai_request("/embeddings", name)
    wait_until(lambda: send(JsonClient(port), "warm up") is not None, 600, "infinity")
    return port, process


def batching(port: int, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) of the engine model; their ratio is the mean batch size."""
    time.sleep(0.5)  # Triton updates statistics just after it answers: let the last requests land
    client = JsonClient(port)
    try:
        stats = client.get(f"/v2/models/{model}/stats")["model_stats"][0]
    finally:
        client.close()
    return stats["inference_count"], stats["execution_count"]


def start_systems(args, manifest, stack: list[Callable[[], None]]) -> tuple[dict, Endpoints]:
    """name -> (port, send) of every system asked for, started; their stop functions go on `stack`."""
    overrides = Overrides(
        instance_kind=InstanceKind.CPU,
        instance_count=args.instances,
        max_queue_delay_us=args.max_queue_delay_us,
        intra_op_threads=args.intra_op_threads,
    )
    api = Listen("127.0.0.1", free_port())
    endpoints, stop_triton = start_triton(args.artifact, overrides, args.log, api)
    stack.append(stop_triton)
    systems = {
        "kubeformer": (endpoints.http_port, triton_request(manifest.name)),
        "api": (api.port, openai_request("/v1/embeddings", manifest.name)),
    }
    if "api-http" in args.systems:  # a second front, reaching Triton over HTTP instead of gRPC
        settings = ApiSettings(
            triton_url=endpoints.http, repositories=(args.artifact / REPOSITORY_DIR,), max_inputs=1024
        )
        front = ApiServer(settings, Listen("127.0.0.1", free_port())).__enter__()
        stack.append(front.stop)
        systems["api-http"] = (front.listen.port, openai_request("/v1/embeddings", manifest.name))
    if "infinity" in args.systems:
        port, process = start_infinity(
            args.infinity, args.model_dir, manifest.name, args.log.with_suffix(".inf")
        )
        stack.append(lambda process=process: (process.terminate(), process.wait(30)))
        systems["infinity"] = (port, openai_request("/embeddings", manifest.name))
    if "pytorch" in args.systems:
        port, process = start_baseline(args.model_dir, manifest.task)
        stack.append(lambda process=process: (process.terminate(), process.wait(30)))
        systems["pytorch"] = (port, baseline_request)
    return {name: systems[name] for name in args.systems}, endpoints


def ratios(row: dict) -> None:
    """Front cost (api / kubeformer) and speedup (kubeformer / pytorch, kubeformer api / infinity)."""
    for ours, theirs, key in (
        ("kubeformer", "pytorch", ""),
        ("api", "kubeformer", "api_vs_triton_"),
        ("api-http", "kubeformer", "api_http_vs_triton_"),
        ("api", "infinity", "api_vs_infinity_"),
    ):
        if ours in row and theirs in row:
            row[key + "throughput_ratio"] = row[ours]["throughput_rps"] / row[theirs]["throughput_rps"]
            row[key + "p50_ratio"] = row[ours]["p50_ms"] / row[theirs]["p50_ms"]
            row[key + "p95_ratio"] = row[ours]["p95_ms"] / row[theirs]["p95_ms"]
            if key.startswith("api"):
                row[key + "p50_added_ms"] = row[ours]["p50_ms"] - row[theirs]["p50_ms"]


def run_benchmark(args: argparse.Namespace) -> dict:
    manifest = load_manifest(args.artifact)
    texts = corpus(args.corpus_size)
    results: dict = {"task": manifest.task, "model": manifest.name, "variant": manifest.variant, "runs": []}
    results["machine"] = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    stack: list[Callable[[], None]] = []
    try:
        systems, endpoints = start_systems(args, manifest, stack)
        for concurrency in args.concurrency:
            row: dict = {"concurrency": concurrency}
            for name, (port, send) in systems.items():
                closed_loop(
                    port, send, texts, concurrency, args.warmup, args.time_limit
                )  # warm up, discarded
                triton_side = name in ("kubeformer", "api", "api-http")
                before = batching(endpoints.http_port, manifest.name + "_model") if triton_side else None
                latencies, elapsed = closed_loop(
                    port, send, texts, concurrency, args.requests, args.time_limit
                )
                row[name] = summarize(latencies, elapsed)
                if before is not None:
                    after = batching(endpoints.http_port, manifest.name + "_model")
                    inferences, executions = after[0] - before[0], after[1] - before[1]
                    row[name]["model_inferences"], row[name]["model_executions"] = inferences, executions
                    row[name]["mean_batch"] = inferences / max(executions, 1)
            ratios(row)
            results["runs"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        for stop in reversed(stack):
            stop()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return results


def markdown(results: dict) -> str:
    lines = [
        "| C | system | req/s | p50 ms | p95 ms | p99 ms | mean batch |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["runs"]:
        for name in [n for n in SYSTEMS if n in row]:
            r = row[name]
            batch = f"{r['mean_batch']:.1f}" if "mean_batch" in r else ""
            lines.append(
                f"| {row['concurrency']} | {name} | {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} | "
                f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {batch} |"
            )
    lines.append("")
    for row in results["runs"]:
        for key, label in (
            ("", "kubeformer / pytorch"),
            ("api_vs_triton_", "api / kubeformer"),
            ("api_http_vs_triton_", "api-http / kubeformer"),
            ("api_vs_infinity_", "api / infinity"),
        ):
            if key + "throughput_ratio" in row:
                added = f", p50 {row[key + 'p50_added_ms']:+.2f} ms" if key + "p50_added_ms" in row else ""
                lines.append(
                    f"- C={row['concurrency']}: throughput x{row[key + 'throughput_ratio']:.2f}, "
                    f"p50 x{row[key + 'p50_ratio']:.2f}, p95 x{row[key + 'p95_ratio']:.2f}{added} ({label})"
                )
    return "\n".join(lines)


SYSTEMS = ("kubeformer", "api", "api-http", "infinity", "pytorch")


def _systems(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or "kubeformer" not in names:
        raise argparse.ArgumentTypeError(f"systems from {SYSTEMS}, kubeformer included; got {text!r}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--artifact", type=Path, required=True, help="artifact directory from kubeformer build"
    )
    parser.add_argument(
        "--model-dir", required=True, help="the same model as a transformers directory (baseline)"
    )
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 32])
    parser.add_argument(
        "--systems",
        type=_systems,
        default=["kubeformer", "pytorch"],
        help=f"comma-separated, in run order, from {','.join(SYSTEMS)} (kubeformer: Triton's v2 route; "
        "api: the front over gRPC; api-http: the front over HTTP)",
    )
    parser.add_argument(
        "--infinity", type=Path, help="venv with infinity-emb (needed for --systems infinity)"
    )
    parser.add_argument("--requests", type=int, default=600, help="request budget per system and concurrency")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per system and concurrency")
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--corpus-size", type=int, default=512)
    parser.add_argument("--instances", type=int, default=1, help="Triton engine instances")
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--max-queue-delay-us", type=int, default=None)
    parser.add_argument("--log", type=Path, default=Path("tritonserver-bench.log"))
    parser.add_argument("--output-json", type=Path)
    args = parser.parse_args(argv)
    if "infinity" in args.systems and args.infinity is None:
        parser.error("--systems infinity needs --infinity VENV")
    return args


def main() -> int:
    args = parse_args()
    results = run_benchmark(args)
    if args.output_json:
        args.output_json.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
