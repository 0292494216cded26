"""The build: source → export → fuse → variants + gate → (TensorRT) → Triton repository → publish.

Each step is one call into a stage module; this module only sequences them, records
timings and writes report.json and, last, manifest.json.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeformer_builder import __version__, cachekey, calibration, inference, labeled, tasks
from kubeformer_builder.architectures import find_architecture
from kubeformer_builder.config import Backend, BuildConfig
from kubeformer_builder.errors import SourceError
from kubeformer_builder.evaluation import Evaluator
from kubeformer_builder.manifest import Manifest, list_files
from kubeformer_builder.manifest import write_manifest as write_manifest_file
from kubeformer_builder.progress import stage
from kubeformer_builder.publish import REPORT_NAME, BuildResult, find_existing, publish, result_from
from kubeformer_builder.sources import check_model_dir, resolve_source
from kubeformer_builder.stages import export, optimize
from kubeformer_builder.variants import VariantSearch, choose
from kubeformer_builder.versions import runtime_versions, tensorrt_target

log = logging.getLogger("kubeformer.pipeline")


def model_name(config: BuildConfig) -> str:
    """The Triton model name: --name, else the source's last path component made Triton-safe."""
    if config.name:
        return config.name
    tail = config.source.rstrip("/").rsplit("/", 1)[-1].lower()
    return (re.sub(r"[^a-z0-9_-]+", "-", tail).strip("-_") or "model")[:63]


def build_inputs(config: BuildConfig, name: str) -> dict[str, Any]:
    gpu_arch, trt_version = tensorrt_target() if config.backend is Backend.TENSORRT else (None, None)
    return cachekey.engine_inputs(config, name, __version__, gpu_arch, trt_version)


def build(config: BuildConfig, output: str) -> BuildResult:
    name = model_name(config)
    inputs = build_inputs(config, name)
    key = cachekey.cache_key(inputs)
    cached = find_existing(output, key, config.storage.endpoint)
    if cached is not None:
        log.info("artifact %s already complete at %s: nothing to build", key[:12], output)
        return cached
    with tempfile.TemporaryDirectory(prefix="kubeformer-build-") as scratch:
        workdir = Path(scratch)
        artifact = workdir / "artifact"
        artifact.mkdir()
        manifest, benchmark = produce(config, name, inputs, key, workdir, artifact)
        publish(artifact, output, config.storage.endpoint)
    return result_from(manifest, output, cached=False, benchmark=benchmark)


@dataclass
class Prepared:
    """A loaded, exported and fused model with its gate inputs: what variants are built from."""

    wrapper: tasks.ExportWrapper
    tokenizer: Any
    exported: Path
    fused: Path
    fused_ops: dict[str, int]
    evaluator: Evaluator
    calibration: list[inference.Batch]


def prepare(config: BuildConfig, workdir: Path, timings: dict[str, float]) -> Prepared:
    from transformers import AutoTokenizer

    endpoint = config.storage.endpoint
    with stage("load", timings):
        source = resolve_source(config.source, config.revision, workdir, endpoint, "model.source")
        model_dir = check_model_dir(source, "model.source")
        tokenizer_dir = model_dir
        if config.tokenizer:
            tokenizer_dir = resolve_source(
                config.tokenizer, config.revision, workdir / "tok", endpoint, "model.tokenizer"
            )
        model_type = json.loads((model_dir / "config.json").read_text()).get("model_type", "")
        arch = find_architecture(model_type)
        tokenizer = load_tokenizer(AutoTokenizer, tokenizer_dir)
        model = tasks.load_model(model_dir, config.task)
        input_names = tuple(n for n in tokenizer.model_input_names if n in tasks.MODEL_INPUTS)
        wrapper = tasks.ExportWrapper(model, config.task, input_names, tasks.read_pooling(model_dir))
        texts = load_calibration(config, workdir)
        held_labeled = labeled.load(
            config, tokenizer, tasks.id2label(config.task, model), input_names, workdir
        )
    with stage("export", timings):
        exported = export.export_onnx(wrapper, workdir / "export", arch.opset)
    with stage("optimize", timings):
        if config.backend is Backend.TENSORRT:  # TensorRT fuses itself and cannot parse ORT's contrib ops
            fused, fused_ops = exported, {}
        else:
            fused, fused_ops = optimize.optimize_onnx(
                exported, workdir / "fused", arch, model.config.num_attention_heads, model.config.hidden_size
            )
        log.info("fused ops: %s", fused_ops or "none")
    with stage("reference", timings):
        split = calibration.split_texts(texts, config.calibration.samples)
        evaluator = Evaluator(wrapper, tokenizer, config, split.held_out, held_labeled)
        calib = calibration_batches(tokenizer, config, input_names, split.calibration)
    return Prepared(wrapper, tokenizer, exported, fused, fused_ops, evaluator, calib)


def produce(
    config: BuildConfig, name: str, inputs: dict, key: str, workdir: Path, artifact: Path
) -> tuple[Manifest, dict]:
    """Run every stage into `artifact`; returns the manifest (already written) and the benchmark."""
    timings: dict[str, float] = {}
    prepared = prepare(config, workdir, timings)
    with stage("variants", timings):
        baseline = prepared.evaluator.time_pytorch()
        candidates = VariantSearch(
            config, prepared.evaluator, prepared.fused, workdir / "variants", prepared.calibration
        ).run()
        chosen = choose(candidates, baseline, config.precision)
        log.info("kept %s (%.2fx PyTorch)", chosen.name, chosen.speedup(baseline))
    versions = runtime_versions()
    if config.backend is Backend.TENSORRT:
        versions.update(zip(("gpu_arch", "tensorrt"), tensorrt_target(), strict=True))
    with stage("triton-repository", timings):
        write_triton_repository(
            config, name, prepared.wrapper, prepared.tokenizer, chosen.engine, artifact / "model_repository"
        )
    benchmark = benchmark_summary(chosen, baseline)
    report = {
        "cache_key": key,
        "kept": chosen.name,
        "baseline_pytorch": {k: v.to_dict() for k, v in baseline.items()},
        "variants": [c.to_dict(baseline) for c in candidates],
        "fused_ops": prepared.fused_ops,
        "stage_seconds": timings,
        "benchmark": benchmark,
    }
    (artifact / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    manifest = Manifest(
        cache_key=key,
        name=name,
        task=config.task.value,
        backend=config.backend.value,
        precision=chosen.precision.value,
        variant=chosen.name,
        inputs=inputs,
        versions=versions,
        files=list_files(artifact),
    )
    write_manifest_file(artifact, manifest)
    return manifest, benchmark


def load_tokenizer(auto_tokenizer, tokenizer_dir: Path):
    try:
        tokenizer = auto_tokenizer.from_pretrained(tokenizer_dir)
    except (OSError, ValueError) as exc:
        raise SourceError(f"model.tokenizer: cannot load a tokenizer from {tokenizer_dir}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise SourceError(
            "model.tokenizer: serving needs a fast tokenizer (tokenizer.json); this one is slow-only"
        )
    return tokenizer


def load_calibration(config: BuildConfig, workdir: Path) -> list[str]:
    source = config.calibration.source
    local = None
    if source and not source.lstrip().startswith("["):
        local = resolve_source(
            source, "main", workdir / "calibration", config.storage.endpoint, "calibration.source"
        )
    return calibration.load_texts(config.calibration, local)


def calibration_batches(tokenizer, config: BuildConfig, input_names, texts: tuple[str, ...]):
    """Equal-shape batches (8 texts padded to the optimal sequence length): the histogram
    calibrators stack a stride of batches, so a short last batch is dropped."""
    sequence, size = config.shapes.sequence.opt, min(8, len(texts))
    return [
        inference.tokenize(
            tokenizer, config.task, texts[i : i + size], input_names, sequence, pad_to=sequence
        )
        for i in range(0, len(texts) - size + 1, size)
    ]


def write_triton_repository(
    config: BuildConfig, name: str, wrapper, tokenizer, engine: Path, dest: Path
) -> None:
    from kubeformer_builder.triton.repository import RepositorySpec, write_repository

    with tempfile.TemporaryDirectory(prefix="kubeformer-tokenizer-") as tokenizer_dir:
        tokenizer.save_pretrained(tokenizer_dir)
        spec = RepositorySpec(
            name=name,
            task=config.task,
            model_input_names=wrapper.input_names,
            max_batch_size=config.shapes.batch.max,
            sequence_buckets=config.shapes.buckets(),
            max_sequence_length=config.shapes.sequence.max,
            truncation=config.truncation,
            id2label=tasks.id2label(config.task, wrapper.model),
            output_dims=tasks.output_dims(config.task, wrapper.model),
            backend=config.backend,
            preferred_batch_sizes=tuple(sorted({config.shapes.batch.opt, config.shapes.batch.max})),
            max_queue_delay_us=1000,
        )
        write_repository(spec, engine, Path(tokenizer_dir), dest)


def benchmark_summary(chosen, baseline) -> dict[str, Any]:
    """status.benchmark: latency, speedup and the gate's verdict (labeled metrics: scores in points)."""
    single, batched = chosen.latency["single"], chosen.latency["batched"]
    summary = {
        "p50Ms": round(single.p50_ms, 3),
        "p95Ms": round(single.p95_ms, 3),
        "throughput": round(batched.throughput, 2),
        "speedupVsPytorch": round(baseline["single"].p50_ms / single.p50_ms, 3),
        "accuracyMetric": chosen.gate.metric,
        "accuracyDrop": round(chosen.gate.drop, 6),
    }
    points = chosen.gate.to_dict().get("points")
    if points:
        summary |= {
            "fp32Score": points["fp32"],
            "variantScore": points["variant"],
            "dropPoints": points["drop"],
        }
    return summary
