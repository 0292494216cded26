"""The cache key: sha256 over the canonical JSON of everything that changes the engine.

Kept free of heavy imports so the operator computes the very same key without torch.
Serving-only settings (replicas, batching delays, resources) are deliberately absent:
changing them must roll the Deployment, not rebuild the engine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


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
    if backend == "tensorrt":
        inputs["gpu_arch"] = gpu_arch
        inputs["tensorrt_version"] = tensorrt_version
    return inputs


def cache_key(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
