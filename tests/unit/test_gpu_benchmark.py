"""benchmarks/gpu: what runs without a GPU (arguments, inputs, the profile, checks, JSON) on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu" / "run.py"
_spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
bench = sys.modules["gpu_benchmark"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(bench)


def test_default_options_are_the_issues_models_and_cases():
    options = bench.parse_options([])
    assert options.models == ("minilm", "bert-base", "roberta-base")
    assert [c.label for c in options.cases] == ["b1s128", "b32s128", "b32s256"]
    assert options.budget_s > 0 and options.output.suffix == ".json"


@pytest.mark.parametrize(
    "argv", [["--cases", "b32"], ["--cases", "b0s128"], ["--models", "gpt2"], ["--budget", "0"]]
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_options(argv)
    assert "error" in capsys.readouterr().err


def test_profile_accepts_every_case_and_the_check():
    cases = bench.parse_options(["--cases", "b1s128", "b32s256"]).cases
    shapes = bench.profile_for(cases)
    for case in (*cases, bench.CHECK_CASE):
        assert shapes.batch.min <= case.batch <= shapes.batch.max
        assert shapes.sequence.min <= case.sequence <= shapes.sequence.max
    assert shapes.batch.opt <= shapes.batch.max and shapes.sequence.opt <= shapes.sequence.max


def test_random_batches_are_seeded_padded_and_within_the_vocabulary():
    case = bench.Case(8, 16)
    names = ("input_ids", "attention_mask", "token_type_ids")
    first = bench.random_batch(case, 100, names, seed=1)
    assert all(np.array_equal(first[n], bench.random_batch(case, 100, names, seed=1)[n]) for n in names)
    assert first["input_ids"].shape == (8, 16) and first["input_ids"].max() < 100
    assert first["attention_mask"][0, 8:].sum() == 0 and first["attention_mask"][1].all()
    assert list(bench.random_batch(case, 100, names[:2], seed=1)) == list(names[:2])


def test_compare_reports_least_cosine_and_largest_difference():
    reference = (np.array([[1.0, 0.0], [0.0, 2.0]]),)
    same = bench.compare(reference, reference)
    assert same == {"min_cosine": 1.0, "max_abs_diff": 0.0}
    turned = bench.compare(reference, (np.array([[1.0, 0.0], [2.0, 0.0]]),))
    assert turned["min_cosine"] == 0.0 and turned["max_abs_diff"] == 2.0


def test_speedups_and_failed_checks_from_a_results_file(tmp_path):
    timing = lambda p50: {"p50_ms": p50, "p95_ms": p50, "throughput": 1.0}  # noqa: E731
    latency = {
        "pytorch-fp32": {"b32s256": timing(45.0)},
        "tensorrt-int8": {"b32s256": timing(9.0)},
        "tensorrt-fp16": {"b32s256": timing(15.0)},
    }
    assert bench.speedups(latency) == {"tensorrt-int8": {"b32s256": 5.0}, "tensorrt-fp16": {"b32s256": 3.0}}
    results = {
        "models": {
            "roberta-base": {
                "check": {
                    "tensorrt-int8": {"min_cosine": 0.95, "max_abs_diff": 0.3},
                    "tensorrt-fp16": {"min_cosine": 0.9999, "max_abs_diff": 0.01},
                }
            }
        }
    }
    assert bench.failed_checks(results) == ["roberta-base tensorrt-int8: cosine 0.95 < 0.98"]
    written = bench.write_results(tmp_path / "results" / "gpu.json", results)
    assert json.loads(written.read_text()) == results


def test_run_sh_is_valid_bash_and_runs_the_gpu_tests():
    script = REPO / "benchmarks" / "gpu" / "run.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "tests/integration/test_tensorrt.py" in text and "benchmarks/gpu/run.py" in text
    assert ".[gpu," in text, "installs the pinned stack from pyproject's gpu extra"
