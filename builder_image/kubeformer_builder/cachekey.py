"""The cache key: sha256 over the canonical JSON of everything that changes the engine.

Kept free of heavy imports so the operator computes the very same key without torch.
Serving-only settings (replicas, batching delays, resources) are deliberately absent:
changing them must roll the Deployment, not rebuild the engine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubeformer_builder.config import BuildConfig


def canonical_inputs(
    *,
    name: str,
    source: str,
    revision: str,
    tokenizer: str | None,
    task: str,
    backend: str,
    precision: str,
    shapes: dict[str, dict[str, int]],
    calibration: dict[str, Any],
    evaluation: dict[str, Any] | None,
    gate: dict[str, Any],
    truncation: str,
    builder_version: str,
    gpu_arch: str | None = None,
    tensorrt_version: str | None = None,
) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "name": name,
        "source": source,
        "revision": revision,
        "tokenizer": tokenizer,
        "task": task,
        "backend": backend,
        "precision": precision,
        "shapes": shapes,
        "calibration": calibration,
        "gate": gate,
        "truncation": truncation,
        "builder_version": builder_version,
    }
    if evaluation is not None:  # labeled data decides which variant ships
        inputs["evaluation"] = evaluation
    if backend == "tensorrt":
        inputs["gpu_arch"] = gpu_arch
        inputs["tensorrt_version"] = tensorrt_version
    return inputs


def engine_inputs(
    config: BuildConfig,
    name: str,
    builder_version: str,
    gpu_arch: str | None = None,
    tensorrt_version: str | None = None,
) -> dict[str, Any]:
    """The canonical inputs of a typed build configuration: what the builder and the operator hash."""
    c, e = config.calibration, config.evaluation
    return canonical_inputs(
        name=name,
        source=config.source,
        revision=config.revision,
        tokenizer=config.tokenizer,
        task=config.task.value,
        backend=config.backend.value,
        precision=config.precision.value,
        shapes={"batch": config.shapes.batch.to_dict(), "sequence": config.shapes.sequence.to_dict()},
        calibration={
            "source": c.source,
            "column": c.column,
            "samples": c.samples,
            "method": c.method.value,
            # Only when set, so the keys of single-text builds stay what they were.
            **({"pairColumn": c.pair_column} if c.pair_column else {}),
        },
        evaluation=None
        if e.source is None
        else {
            "source": e.source,
            "textColumn": e.text_column,
            "textPairColumn": e.text_pair_column,
            "labelColumn": e.label_column,
            "samples": e.samples,
        },
        gate={
            "metric": config.gate.metric.value if config.gate.metric else None,
            "maxDrop": config.gate.max_drop,
        },
        truncation=config.truncation.value,
        builder_version=builder_version,
        gpu_arch=gpu_arch,
        tensorrt_version=tensorrt_version,
    )


def cache_key(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
