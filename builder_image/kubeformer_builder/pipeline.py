"""The build: source → export → fuse → variants + gate → (TensorRT) → Triton repository → publish.

Each step is one call into a stage module; this module only sequences them, records
timings and writes report.json and, last, manifest.json.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubeformer_builder import (
    __version__,
    cachekey,
    calibration,
    inference,
    labeled,
    model_inputs,
    sentence_pipeline,
    tasks,
    timing,
)
from kubeformer_builder.architectures import Architecture, find_architecture
from kubeformer_builder.config import MAX_SEQUENCE, Backend, BuildConfig, Task
from kubeformer_builder.errors import SourceError
from kubeformer_builder.evaluation import Evaluator, make_reference
from kubeformer_builder.isa import host_cpu
from kubeformer_builder.manifest import Manifest, list_files
from kubeformer_builder.manifest import write_manifest as write_manifest_file
from kubeformer_builder.progress import stage
from kubeformer_builder.publish import REPORT_NAME, BuildResult, find_existing, publish, result_from
from kubeformer_builder.sources import check_model_dir, resolve_source
from kubeformer_builder.stages import export, optimize
from kubeformer_builder.variants import VariantSearch, choose, time_candidates
from kubeformer_builder.versions import runtime_versions, tensorrt_target, tensorrt_versions

log = logging.getLogger("kubeformer.pipeline")


def model_name(config: BuildConfig) -> str:
    """The Triton model name: --name, else the source's last path component made Triton-safe."""
    if config.name:
        return config.name
    tail = config.source.rstrip("/").rsplit("/", 1)[-1].lower()
    return (re.sub(r"[^a-z0-9_-]+", "-", tail).strip("-_") or "model")[:63]


def build_inputs(config: BuildConfig, name: str) -> dict[str, Any]:
    if config.backend is not Backend.TENSORRT:
        return cachekey.engine_inputs(config, name, __version__)
    gpu, trt_version = tensorrt_target()
    return cachekey.engine_inputs(config, name, __version__, gpu.arch, trt_version)


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
    """A loaded, exported and fused model with its gate inputs: what variants are built from.

    `config` is the build's config with the sequence shapes fitted to the model's limit: what
    every later stage must use.
    """

    config: BuildConfig
    sequence_limit: model_inputs.SequenceLimit
    wrapper: tasks.ExportWrapper
    tokenizer: Any
    exported: Path
    fused: Path
    fused_ops: dict[str, int]
    evaluator: Evaluator
    calibration: list[inference.Batch]


def fit_to_model(
    config: BuildConfig, arch: Architecture, model_dir: Path, tokenizer
) -> tuple[BuildConfig, model_inputs.SequenceLimit]:
    """The config with its sequence shapes within the model's limit; ConfigError when an explicit
    max is above it. Reads only config files, so a refusal comes before any weights are loaded."""
    from transformers import AutoConfig

    limit = model_inputs.sequence_limit(
        arch,
        AutoConfig.from_pretrained(model_dir),
        tokenizer.model_max_length,
        model_inputs.read_st_max_seq_length(model_dir),
        MAX_SEQUENCE,
    )
    shapes = config.shapes.fit_sequence(limit.tokens, limit.describe())
    log.info("sequence limit %d (%s); shapes %s", limit.tokens, limit.describe(), shapes.sequence.to_dict())
    return replace(config, shapes=shapes), limit


def graph_inputs(path: Path) -> tuple[str, ...]:
    import onnx

    return tuple(i.name for i in onnx.load(str(path), load_external_data=False).graph.input)


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
        config, limit = fit_to_model(config, arch, model_dir, tokenizer)
        model = tasks.load_model(model_dir, config.task)
        input_names = model_inputs.select_inputs(model, tokenizer.model_input_names)
        sentence_model = head = None
        if config.task is Task.FEATURE_EXTRACTION:
            sentence_model = sentence_pipeline.load_sentence_transformer(model_dir)
            head = sentence_pipeline.export_head(sentence_model, model_dir)
        wrapper = tasks.ExportWrapper(model, config.task, input_names, head)
        texts = load_calibration(config, workdir)
        held_labeled = labeled.load(
            config, tokenizer, tasks.id2label(config.task, model), input_names, workdir
        )
    with stage("export", timings):
        exported = export.export_onnx(wrapper, workdir / "export", arch.opset)
        taken = graph_inputs(exported)
        if taken != input_names:  # the exporter prunes inputs the graph never reads
            log.info("the exported graph reads %s of %s; serving only those", taken, input_names)
            wrapper = tasks.ExportWrapper(model, config.task, taken, head)
            input_names = taken
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
        reference = make_reference(config, model_dir, tokenizer, sentence_model)
        evaluator = Evaluator(wrapper, tokenizer, config, split.held_out, reference, held_labeled)
        calib = calibration_batches(tokenizer, config, input_names, split.calibration)
    return Prepared(config, limit, wrapper, tokenizer, exported, fused, fused_ops, evaluator, calib)


def produce(
    config: BuildConfig, name: str, inputs: dict, key: str, workdir: Path, artifact: Path
) -> tuple[Manifest, dict]:
    """Run every stage into `artifact`; returns the manifest (already written) and the benchmark."""
    timings: dict[str, float] = {}
    prepared = prepare(config, workdir, timings)
    config, limit = prepared.config, prepared.sequence_limit
    cpu = host_cpu()
    with stage("variants", timings):
        candidates = VariantSearch(
            config, prepared.evaluator, prepared.fused, workdir / "variants", prepared.calibration, cpu.isa
        ).run()
    with stage("timing", timings):
        baseline = time_candidates(prepared.evaluator, candidates)
        chosen = choose(candidates, baseline, config.precision)
        log.info("kept %s (%.2fx PyTorch, CPU %s)", chosen.name, chosen.speedup(baseline), cpu.isa.value)
    cpu_block = None  # TensorRT engines run on the GPU: the CPU's ISA does not shape them
    if config.backend is not Backend.TENSORRT:
        cpu_block = {**cpu.to_dict(), "int8_scheme": chosen.scheme.to_dict() if chosen.scheme else None}
    versions = runtime_versions()
    if config.backend is Backend.TENSORRT:
        versions.update(tensorrt_versions(*tensorrt_target()))
    with stage("triton-repository", timings):
        write_triton_repository(
            config, name, prepared.wrapper, prepared.tokenizer, chosen.engine, artifact / "model_repository"
        )
    benchmark = benchmark_summary(chosen, baseline)
    report = {
        "cache_key": key,
        "kept": chosen.name,
        "cpu": cpu_block,
        "reference": prepared.evaluator.reference.to_dict(),
        "baseline_pytorch": {k: v.to_dict() for k, v in baseline.items()},
        "timing": timing_method(),
        "variants": [c.to_dict(baseline) for c in candidates],
        "fused_ops": prepared.fused_ops,
        "model_inputs": list(prepared.wrapper.input_names),
        "shapes": {"batch": config.shapes.batch.to_dict(), "sequence": config.shapes.sequence.to_dict()},
        "sequence_limit": {"tokens": limit.tokens, "bounds": limit.bounds},
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
        cpu=cpu_block,
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


def load_calibration(config: BuildConfig, workdir: Path) -> list[calibration.Text]:
    source = config.calibration.source
    local = None
    if source and not source.lstrip().startswith("["):
        local = resolve_source(
            source, "main", workdir / "calibration", config.storage.endpoint, "calibration.source"
        )
    return calibration.load_texts(config.calibration, local)


def calibration_batches(tokenizer, config: BuildConfig, input_names, texts: tuple[calibration.Text, ...]):
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
    from kubeformer_builder.serving.answers import score_function
    from kubeformer_builder.triton.repository import RepositorySpec, write_repository

    model_config = wrapper.model.config
    function_to_apply = (
        score_function(model_config.problem_type, model_config.num_labels)
        if config.task is Task.TEXT_CLASSIFICATION
        else None
    )
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
            output_dims=tasks.output_dims(wrapper),
            backend=config.backend,
            preferred_batch_sizes=tuple(sorted({config.shapes.batch.opt, config.shapes.batch.max})),
            max_queue_delay_us=1000,
            function_to_apply=function_to_apply,
            normalized=wrapper.head is not None and wrapper.head.normalizes,
        )
        write_repository(spec, engine, Path(tokenizer_dir), dest)


def timing_method() -> dict[str, Any]:
    """How the latencies in report.json were measured, with the thresholds that flag noise."""
    return {
        "method": "interleaved rounds, one block per contender, order alternating",
        "rounds": timing.ROUNDS,
        "noisy_when": {"relative_spread_above": timing.MAX_SPREAD, "p95_over_p50_above": timing.MAX_TAIL},
    }


def benchmark_summary(chosen, baseline) -> dict[str, Any]:
    """What status.benchmark shows. `noisy` is true when any measurement behind it is; a noisy
    speedup is left out rather than published."""
    single, batched = chosen.latency["single"], chosen.latency["batched"]
    ratio = timing.speedup(baseline["single"], single)
    noise = [*ratio.noise, *batched.noise]
    for latencies in (baseline, chosen.latency):
        noise += timing.inconsistent_shapes(latencies["single"], latencies["batched"])
    summary: dict[str, Any] = {
        "p50Ms": round(single.p50_ms, 3),
        "p95Ms": round(single.p95_ms, 3),
        "throughput": round(batched.throughput, 2),
        "accuracyMetric": chosen.gate.metric,
        "accuracyDrop": round(chosen.gate.drop, 6),
        "noisy": bool(noise),
    }
    if noise:
        log.warning("speed figures are noisy, speedup not published: %s", "; ".join(noise))
    else:
        summary["speedupVsPytorch"] = round(ratio.value, 3)
    points = chosen.gate.to_dict().get("points")
    if points:
        summary |= {
            "fp32Score": points["fp32"],
            "variantScore": points["variant"],
            "dropPoints": points["drop"],
        }
    return summary
