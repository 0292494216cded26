"""Serving-time changes to a verified copy of a repository: placement, instances, batching, QA stride.

These are the operator's `serving` fields; they are not in the cache key, so changing them must not
need a rebuild. They apply to the engine models (backend onnxruntime or platform tensorrt_plan),
and `doc_stride` to question-answering tokenizers; the ensemble keeps what the build wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from kubeformer_builder.errors import BackendUnavailableError, ConfigError


class InstanceKind(str, Enum):
    AUTO = "auto"  # GPU when this machine has one, else CPU
    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True)
class Overrides:
    instance_kind: InstanceKind = InstanceKind.AUTO
    instance_count: int | None = None
    max_queue_delay_us: int | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    intra_op_threads: int | None = None
    doc_stride: int | None = None  # tokens shared by neighbouring QA context windows


def has_gpu() -> bool:
    """An NVIDIA device node is what Triton itself needs to place a KIND_GPU instance."""
    return Path("/dev/nvidia0").exists()


def is_engine(config: model_config_pb2.ModelConfig) -> bool:
    return config.backend == "onnxruntime" or config.platform == "tensorrt_plan"


def _kind(kind: InstanceKind, gpu: bool) -> int:
    Group = model_config_pb2.ModelInstanceGroup
    if kind is InstanceKind.GPU or (kind is InstanceKind.AUTO and gpu):
        return Group.KIND_GPU
    return Group.KIND_CPU


def is_qa_tokenizer(config: model_config_pb2.ModelConfig) -> bool:
    task = config.parameters["task"].string_value if "task" in config.parameters else ""
    return config.backend == "python" and task == "question-answering"


def apply_doc_stride(config: model_config_pb2.ModelConfig, stride: int) -> None:
    """Set a QA tokenizer's window stride (requests whose question leaves no room beyond it are refused)."""
    max_length = int(config.parameters["sequence_buckets"].string_value.split(",")[-1])
    if not 0 <= stride < max_length:
        raise ConfigError(
            f"{config.name}: doc stride {stride} must be in 0..{max_length - 1} "
            f"(below the maximum sequence length {max_length})"
        )
    config.parameters["doc_stride"].string_value = str(stride)


def apply_to_config(config: model_config_pb2.ModelConfig, overrides: Overrides, gpu: bool) -> None:
    """Change `config` in place; refuses combinations Triton would refuse later, less clearly."""
    if overrides.instance_kind is InstanceKind.GPU and not gpu:
        raise ConfigError(f"{config.name}: instance kind gpu requested but this machine has no NVIDIA GPU")
    if overrides.preferred_batch_sizes and max(overrides.preferred_batch_sizes) > config.max_batch_size:
        raise ConfigError(
            f"{config.name}: preferred batch sizes {list(overrides.preferred_batch_sizes)} exceed "
            f"max_batch_size {config.max_batch_size}"
        )
    if not config.instance_group:
        config.instance_group.add(count=1)
    for group in config.instance_group:
        group.kind = _kind(overrides.instance_kind, gpu)
        if overrides.instance_count is not None:
            group.count = overrides.instance_count
    if overrides.max_queue_delay_us is not None:
        config.dynamic_batching.max_queue_delay_microseconds = overrides.max_queue_delay_us
    if overrides.preferred_batch_sizes is not None:
        config.dynamic_batching.ClearField("preferred_batch_size")
        config.dynamic_batching.preferred_batch_size.extend(overrides.preferred_batch_sizes)
    if overrides.intra_op_threads is not None and config.backend == "onnxruntime":
        config.parameters["intra_op_thread_count"].string_value = str(overrides.intra_op_threads)


def allow_ragged_batches(config: model_config_pb2.ModelConfig) -> None:
    """Let Triton batch requests of different sequence lengths into one execution.

    Only our Python-based onnxruntime backend understands this (it runs each shape as its own batch);
    the native backends do not, so it is set on the serving copy by a launcher that uses ours, never
    in the artifact.
    """
    if config.backend != "onnxruntime":
        raise BackendUnavailableError(
            f"{config.name}: a {config.platform or config.backend} engine needs its native Triton backend "
            "(the cluster's GPU image); the local Triton has only python and the Python-based onnxruntime"
        )
    for tensor in config.input:
        tensor.allow_ragged_batch = True


def apply_overrides(repository: Path, overrides: Overrides, gpu: bool, ragged: bool = False) -> list[str]:
    """Rewrite the engine models' config.pbtxt under `repository`; returns the models changed.

    `ragged`: the server runs our Python-based onnxruntime backend (see allow_ragged_batches).
    Each file is replaced (written beside, then renamed), never edited in place, so a repository
    copied with hard links leaves the original untouched.
    """
    changed = []
    for path in sorted(repository.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
        if is_engine(config):
            apply_to_config(config, overrides, gpu)
            if ragged:
                allow_ragged_batches(config)
        elif overrides.doc_stride is not None and is_qa_tokenizer(config):
            apply_doc_stride(config, overrides.doc_stride)
        else:
            continue
        temporary = path.with_name(".config.pbtxt.tmp")
        temporary.write_text(text_format.MessageToString(config, as_utf8=True), encoding="utf-8")
        temporary.replace(path)
        changed.append(config.name)
    return changed
