"""Accuracy benchmark: the fine-tuned BBC classifiers, fp32 PyTorch against every variant kubeformer builds.

For the topic classifier (one text) and the same-topic pair classifier made by finetune.py, in one
process and on the same inputs: the build's own path (export, fuse, the int8 search with the
labeled `accuracy` gate at maxDrop 0.004 = 0.4 points, calibrated on training-split texts), then
accuracy in points on the held-out test split, the drop against fp32 PyTorch, and latency at
b1 s128 and b32 s128 (inputs padded to 128 tokens) for PyTorch eager and every variant, kept or
rejected.

    nice .venv/bin/python benchmarks/accuracy/finetune.py     # once: the models, cached
    nice .venv/bin/python benchmarks/accuracy/run.py [--models topic pair]

Writes benchmarks/accuracy/results/<model>.json and prints a table per model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubeformer_builder import progress
from kubeformer_builder.config import parse_build_config
from kubeformer_builder.errors import GateError
from kubeformer_builder.pipeline import prepare
from kubeformer_builder.variants import VariantSearch, choose

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import finetune  # noqa: E402

MAX_DROP = 0.004  # the target: at most 0.4 points
TARGETS = {"single": 2.3, "batched": 2.5}  # speedup over PyTorch eager at b1 s128 and b32 s128
PAIR_COLUMN = {"topic": None, "pair": "text_pair"}


def config_for(model: str, cache: Path):
    root = cache / model
    if not (root / "model" / "config.json").is_file():
        raise SystemExit(f"{root}/model is missing: run benchmarks/accuracy/finetune.py first")
    return parse_build_config(
        source=f"file://{root / 'model'}",
        task="text-classification",
        precision="auto",
        batch=(1, 32, 32),
        sequence=(1, 128, 128),
        calibration_source=f"file://{root / 'calibration.jsonl'}",
        evaluation_source=f"file://{root / 'test.jsonl'}",
        evaluation_text_pair_column=PAIR_COLUMN[model],
        gate_metric="accuracy",
        max_drop=MAX_DROP,
    )


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def run_model(model: str, cache: Path) -> dict:
    config = config_for(model, cache)
    load_before, started = load_average(), time.time()
    with tempfile.TemporaryDirectory(prefix=f"kubeformer-accuracy-{model}-") as scratch:
        workdir = Path(scratch)
        timings: dict[str, float] = {}
        prepared = prepare(config, workdir, timings)
        evaluator = prepared.evaluator
        baseline = evaluator.time_pytorch()
        candidates = VariantSearch(
            config, evaluator, prepared.fused, workdir / "variants", prepared.calibration
        ).run()
        for candidate in candidates:  # the search times only the variants that pass: time the others too
            if not candidate.latency:
                candidate.latency = evaluator.time_runner(
                    evaluator.runner(candidate.path, candidate.precision)[0]
                )
        try:
            kept = choose(candidates, baseline, config.precision).name
        except GateError:
            kept = None
    rows = []
    for candidate in candidates:
        speedups = {k: round(baseline[k].p50_ms / candidate.latency[k].p50_ms, 3) for k in baseline}
        rows.append(
            {
                "variant": candidate.name,
                "kept": candidate.name == kept,
                "passed": candidate.passed,
                "kept_fp32_nodes": len(candidate.excluded),
                "accuracy_points": candidate.gate.to_dict()["points"],
                "latency": {k: v.to_dict() for k, v in candidate.latency.items()},
                "speedup_vs_pytorch": speedups,
                "meets_targets": candidate.passed and all(speedups[k] >= TARGETS[k] for k in TARGETS),
            }
        )
    return {
        "model": model,
        "examples": evaluator.labeled and len(evaluator.labeled),
        "max_drop_points": 100 * MAX_DROP,
        "kept": kept,
        "pytorch_eager": {k: v.to_dict() for k, v in baseline.items()},
        "variants": rows,
        "threads": len(os.sched_getaffinity(0)),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "seconds": round(time.time() - started, 1),
    }


def format_table(result: dict) -> str:
    columns = ("fp32", "variant", "drop", "b1 ms", "x", "b32 ms", "x")
    header = f"{'variant':<22} " + " ".join(f"{c:>7}" for c in columns) + "  gate"
    lines = [f"{result['model']}: {result['examples']} held-out examples, kept {result['kept']}", header]
    torch = result["pytorch_eager"]
    eager = f"{torch['single']['p50_ms']:>7.2f} {1:>7.2f} {torch['batched']['p50_ms']:>7.2f} {1:>7.2f}"
    lines.append(f"{'pytorch eager':<22} {'':>7} {'':>7} {'':>7} " + eager)
    for row in result["variants"]:
        points, latency, speedup = row["accuracy_points"], row["latency"], row["speedup_vs_pytorch"]
        lines.append(
            f"{row['variant']:<22} {points['fp32']:>7.2f} {points['variant']:>7.2f} {points['drop']:>7.2f} "
            f"{latency['single']['p50_ms']:>7.2f} {speedup['single']:>7.2f} "
            f"{latency['batched']['p50_ms']:>7.2f} {speedup['batched']:>7.2f}  "
            f"{'kept' if row['kept'] else 'pass' if row['passed'] else 'FAIL'}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PAIR_COLUMN), choices=list(PAIR_COLUMN))
    parser.add_argument("--cache", type=Path, default=finetune.DEFAULT_CACHE)
    args = parser.parse_args()
    progress.configure()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (HERE / "results").mkdir(exist_ok=True)
    for model in args.models:
        result = {"commit": commit, **run_model(model, args.cache)}
        (HERE / "results" / f"{model}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(format_table(result), flush=True)


if __name__ == "__main__":
    main()
