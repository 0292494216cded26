"""The Triton model repository of an artifact: three models per encoder (see docs/artifact-format.md).

`NAME` is an ensemble that takes text and returns the task output, `NAME_tokenizer` a python-backend
model that turns text into padded token ids, `NAME_model` the engine (ONNX Runtime or TensorRT).
Rendering is pure (spec in, config.pbtxt text out) so every task and backend is unit tested without a
server; `write_repository` only lays the rendered text and the given files out on disk.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubeformer_builder.config import Backend, Task, Truncation
from kubeformer_builder.errors import ArtifactError, ConfigError, UnsupportedModelError
from kubeformer_builder.serving.answers import SCORE_FUNCTIONS

TOKENIZER_SUFFIX = "_tokenizer"
MODEL_SUFFIX = "_model"
TOKENIZER_MODEL_SOURCE = Path(__file__).with_name("tokenizer_model.py")
TOKENIZER_SUBDIR = "tokenizer"
# Object stores have no empty directories: this file keeps the ensemble's version directory alive.
ENSEMBLE_PLACEHOLDER = "README"
_PLACEHOLDER_TEXT = "Triton needs this version directory; an ensemble has no files of its own.\n"
ENGINE_FILENAMES = {Backend.ONNXRUNTIME: "model.onnx", Backend.TENSORRT: "model.plan"}

# What the tokenizer model can produce (tokenizer_model.py maps each to an Encoding attribute).
TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")
OFFSETS = "OFFSETS"
SAMPLE_INDEX = "SAMPLE_INDEX"  # QA: the question each context window (output row) belongs to
TASK_INPUTS = {
    Task.TEXT_CLASSIFICATION: ("TEXT",),
    Task.FEATURE_EXTRACTION: ("TEXT",),
    Task.TOKEN_CLASSIFICATION: ("TEXT",),
    Task.QUESTION_ANSWERING: ("QUESTION", "CONTEXT"),
}
# Inputs a request may leave out: a text-classification request without TEXT_PAIR is single texts.
TASK_OPTIONAL_INPUTS = {Task.TEXT_CLASSIFICATION: ("TEXT_PAIR",)}
TASK_OUTPUTS = {
    Task.TEXT_CLASSIFICATION: ("LOGITS",),
    Task.FEATURE_EXTRACTION: ("EMBEDDING",),
    Task.TOKEN_CLASSIFICATION: ("LOGITS",),
    Task.QUESTION_ANSWERING: ("START_LOGITS", "END_LOGITS"),
}
# Rank of each output without the batch dim; -1 marks the per-token (sequence) dim.
_OUTPUT_SHAPES = {
    Task.TEXT_CLASSIFICATION: "[N]",
    Task.FEATURE_EXTRACTION: "[H]",
    Task.TOKEN_CLASSIFICATION: "[-1, N]",
    Task.QUESTION_ANSWERING: "[-1]",
}
TASKS_WITH_OFFSETS = frozenset({Task.TOKEN_CLASSIFICATION, Task.QUESTION_ANSWERING})
TASKS_WITH_LABELS = frozenset({Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION})
# Triton model names become directory names and URL path segments.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class RepositorySpec:
    """Everything the three configs depend on; the builder fills it from the exported model."""

    name: str
    task: Task
    model_input_names: tuple[str, ...]
    max_batch_size: int
    sequence_buckets: tuple[int, ...]
    max_sequence_length: int
    truncation: Truncation
    id2label: dict[int, str] | None
    output_dims: dict[str, list[int]]
    backend: Backend
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int
    # text-classification: how logits become scores (serving/answers.py SCORE_FUNCTIONS), else None.
    function_to_apply: str | None = None
    # feature-extraction: EMBEDDING has unit L2 norm (the sentence-transformers pipeline ends in Normalize).
    normalized: bool = False

    @property
    def tokenizer_name(self) -> str:
        return self.name + TOKENIZER_SUFFIX

    @property
    def model_name(self) -> str:
        return self.name + MODEL_SUFFIX


def _output_problems(spec: RepositorySpec) -> list[str]:
    expected = TASK_OUTPUTS[spec.task]
    if tuple(sorted(spec.output_dims)) != tuple(sorted(expected)):
        found = sorted(spec.output_dims)
        return [f"output_dims: {spec.task.value} needs exactly {', '.join(expected)}, got {found}"]
    problems = []
    rank = 2 if spec.task is Task.TOKEN_CLASSIFICATION else 1
    for name, dims in spec.output_dims.items():
        valid = len(dims) == rank and all(isinstance(d, int) and (d > 0 or d == -1) for d in dims)
        per_token = spec.task in TASKS_WITH_OFFSETS
        if not valid or (dims[0] == -1) != per_token or (rank == 2 and dims[1] < 1):
            problems.append(
                f"output_dims.{name}: {spec.task.value} needs {_OUTPUT_SHAPES[spec.task]}, got {dims}"
            )
    return problems


def _label_problems(spec: RepositorySpec) -> list[str]:
    if spec.task not in TASKS_WITH_LABELS:
        return (
            []
            if spec.id2label is None
            else [f"id2label: {spec.task.value} has no labels, got {spec.id2label}"]
        )
    if not spec.id2label:
        return [f"id2label: {spec.task.value} needs the label names"]
    labels = spec.output_dims.get("LOGITS", [])
    if labels and sorted(spec.id2label) != list(range(labels[-1])):
        return [
            f"id2label: needs ids 0..{labels[-1] - 1} for {labels[-1]} logits, got {sorted(spec.id2label)}"
        ]
    return []


def _function_problems(spec: RepositorySpec) -> list[str]:
    if spec.function_to_apply is None:  # clients then pick transformers' default for the label count
        return []
    if spec.task is not Task.TEXT_CLASSIFICATION:
        return [f"function_to_apply: only text-classification has one, got {spec.function_to_apply!r}"]
    if spec.function_to_apply not in SCORE_FUNCTIONS:
        return [
            f"function_to_apply: needs one of {', '.join(SCORE_FUNCTIONS)}, got {spec.function_to_apply!r}"
        ]
    return []


def spec_problems(spec: RepositorySpec) -> list[str]:
    """Every reason the spec cannot make a loadable repository, each with its field."""
    problems = []
    if not _NAME_RE.match(spec.name):
        problems.append(
            f"name: {spec.name!r} must be letters, digits, '_', '-' or '.', at most 63 characters"
        )
    unknown = [n for n in spec.model_input_names if n not in TOKENIZER_OUTPUTS]
    if (
        "input_ids" not in spec.model_input_names
        or unknown
        or len(set(spec.model_input_names)) != len(spec.model_input_names)
    ):
        problems.append(
            f"model_input_names: need input_ids and distinct names among {', '.join(TOKENIZER_OUTPUTS)}, "
            f"got {list(spec.model_input_names)}"
        )
    if spec.max_batch_size < 1:
        problems.append(f"max_batch_size: must be >= 1, got {spec.max_batch_size}")
    buckets = list(spec.sequence_buckets)
    if (
        not buckets
        or buckets != sorted(set(buckets))
        or buckets[0] < 1
        or buckets[-1] != spec.max_sequence_length
    ):
        problems.append(
            f"sequence_buckets: need ascending positive lengths ending at max_sequence_length "
            f"{spec.max_sequence_length}, got {buckets}"
        )
    sizes = list(spec.preferred_batch_sizes)
    if sizes != sorted(set(sizes)) or any(not 1 <= s <= spec.max_batch_size for s in sizes):
        problems.append(
            f"preferred_batch_sizes: need ascending sizes in 1..{spec.max_batch_size}, got {sizes}"
        )
    if spec.max_queue_delay_us < 0:
        problems.append(f"max_queue_delay_us: must be >= 0, got {spec.max_queue_delay_us}")
    return problems + _output_problems(spec) + _label_problems(spec) + _function_problems(spec)


def check_spec(spec: RepositorySpec) -> None:
    problems = spec_problems(spec)
    if problems:
        raise ConfigError(f"Triton repository {spec.name!r}: " + "; ".join(problems))


def _quote(text: str) -> str:
    """A protobuf text-format string literal (UTF-8 kept as is, which the parser accepts)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dims(dims: list[int] | tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensors(kind: str, tensors: list[tuple[str, str, list[int]]], optional: tuple[str, ...] = ()) -> str:
    body = ",\n".join(
        f"  {{\n    name: {_quote(name)}\n    data_type: {dtype}\n    dims: {_dims(dims)}\n"
        + ("    optional: true\n" if name in optional else "")
        + "  }"
        for name, dtype, dims in tensors
    )
    return f"{kind} [\n{body}\n]\n"


def _parameters(values: dict[str, str]) -> str:
    return "".join(
        f"parameters {{\n  key: {_quote(key)}\n  value: {{ string_value: {_quote(value)} }}\n}}\n"
        for key, value in values.items()
    )


def _header(name: str, kind: str, max_batch_size: int) -> str:
    return f"name: {_quote(name)}\n{kind}\nmax_batch_size: {max_batch_size}\n"


def _input_names(task: Task) -> list[str]:
    return [*TASK_INPUTS[task], *TASK_OPTIONAL_INPUTS.get(task, ())]


def _text_inputs(spec: RepositorySpec) -> str:
    tensors = [(name, "TYPE_STRING", [1]) for name in _input_names(spec.task)]
    return _tensors("input", tensors, optional=TASK_OPTIONAL_INPUTS.get(spec.task, ()))


def default_doc_stride(max_sequence_length: int) -> int:
    """Tokens shared by neighbouring QA windows: transformers' QA pipeline default, min(max // 2, 128)."""
    return min(max_sequence_length // 2, 128)


def _engine_outputs(spec: RepositorySpec) -> list[tuple[str, str, list[int]]]:
    return [(name, "TYPE_FP32", spec.output_dims[name]) for name in TASK_OUTPUTS[spec.task]]


def _tokenizer_outputs(spec: RepositorySpec) -> list[tuple[str, str, list[int]]]:
    outputs = [(name, "TYPE_INT64", [-1]) for name in spec.model_input_names]
    if spec.task in TASKS_WITH_OFFSETS:
        outputs.append((OFFSETS, "TYPE_INT32", [-1, 2]))
    if spec.task is Task.QUESTION_ANSWERING:
        outputs.append((SAMPLE_INDEX, "TYPE_INT32", [1]))
    return outputs


def _step(model: str, inputs: list[str], outputs: list[str]) -> str:
    maps = [f"      input_map {{ key: {_quote(n)} value: {_quote(n)} }}" for n in inputs]
    maps += [f"      output_map {{ key: {_quote(n)} value: {_quote(n)} }}" for n in outputs]
    lines = "\n".join(maps)
    return f"    {{\n      model_name: {_quote(model)}\n      model_version: -1\n{lines}\n    }}"


def render_ensemble_config(spec: RepositorySpec) -> str:
    """The ensemble users call: text in, task outputs (plus OFFSETS where answers need spans) out.

    Question answering returns one row per context window, more rows than questions when a context
    is longer than a window; SAMPLE_INDEX maps each row to its question. Triton passes the
    tokenizer's row count on to the engine and back (verified with the nvidia-pytriton Triton 2.51).
    """
    check_spec(spec)
    tokenizer_tensors = _tokenizer_outputs(spec)
    tokenizer_outputs = [name for name, _, _ in tokenizer_tensors]
    engine_outputs = list(TASK_OUTPUTS[spec.task])
    outputs = _engine_outputs(spec) + [t for t in tokenizer_tensors if t[0] not in spec.model_input_names]
    steps = ",\n".join(
        [
            _step(spec.tokenizer_name, _input_names(spec.task), tokenizer_outputs),
            _step(spec.model_name, list(spec.model_input_names), engine_outputs),
        ]
    )
    parameters = {"task": spec.task.value, "max_sequence_length": str(spec.max_sequence_length)}
    if spec.id2label is not None:
        labels = {str(key): value for key, value in sorted(spec.id2label.items())}
        parameters["id2label"] = json.dumps(labels, ensure_ascii=False, separators=(",", ":"))
    if spec.function_to_apply is not None:
        parameters["function_to_apply"] = spec.function_to_apply
    if spec.task is Task.FEATURE_EXTRACTION:
        parameters["normalized"] = "true" if spec.normalized else "false"
    return (
        _header(spec.name, 'platform: "ensemble"', spec.max_batch_size)
        + _text_inputs(spec)
        + _tensors("output", outputs)
        + f"ensemble_scheduling {{\n  step [\n{steps}\n  ]\n}}\n"
        + _parameters(parameters)
    )


def render_tokenizer_config(spec: RepositorySpec) -> str:
    """The python-backend tokenizer; it batches queued requests but pads each one to its own bucket."""
    check_spec(spec)
    parameters = {
        "sequence_buckets": ",".join(str(b) for b in spec.sequence_buckets),
        "truncation": spec.truncation.value,
        "model_input_names": ",".join(spec.model_input_names),
        "task": spec.task.value,
    }
    if spec.task is Task.QUESTION_ANSWERING:
        parameters["doc_stride"] = str(default_doc_stride(spec.max_sequence_length))
    return (
        _header(spec.tokenizer_name, 'backend: "python"', spec.max_batch_size)
        + "dynamic_batching { }\n"
        + _text_inputs(spec)
        + _tensors("output", _tokenizer_outputs(spec))
        + "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n"
        + _parameters(parameters)
    )


def render_model_config(spec: RepositorySpec) -> str:
    """The engine with dynamic batching; KIND_AUTO lets Triton place it on a GPU when there is one.

    ONNX Runtime models name the backend (not a `runtime`), so Triton uses its native
    onnxruntime backend where it has one and the Python-based one we ship otherwise.
    """
    check_spec(spec)
    kind = 'backend: "onnxruntime"' if spec.backend is Backend.ONNXRUNTIME else 'platform: "tensorrt_plan"'
    preferred = (
        f"  preferred_batch_size: {_dims(spec.preferred_batch_sizes)}\n" if spec.preferred_batch_sizes else ""
    )
    batching = (
        f"dynamic_batching {{\n{preferred}  max_queue_delay_microseconds: {spec.max_queue_delay_us}\n}}\n"
    )
    # 0 = the runtime's own default (one thread per physical core); `kubeformer serve` may override it.
    threads = {"intra_op_thread_count": "0"} if spec.backend is Backend.ONNXRUNTIME else {}
    return (
        _header(spec.model_name, kind, spec.max_batch_size)
        + f"default_model_filename: {_quote(ENGINE_FILENAMES[spec.backend])}\n"
        + _tensors("input", [(name, "TYPE_INT64", [-1]) for name in spec.model_input_names])
        + _tensors("output", _engine_outputs(spec))
        + batching
        + "instance_group [\n  {\n    count: 1\n    kind: KIND_AUTO\n  }\n]\n"
        + _parameters(threads)
    )


def _model_dir(dest: Path, name: str, config: str) -> Path:
    """NAME/config.pbtxt and the empty version directory NAME/1/ Triton requires."""
    version = dest / name / "1"
    version.mkdir(parents=True)
    (dest / name / "config.pbtxt").write_text(config, encoding="utf-8")
    return version


def write_repository(spec: RepositorySpec, engine_file: Path, tokenizer_dir: Path, dest: Path) -> None:
    """Lay out dest/NAME, dest/NAME_tokenizer and dest/NAME_model as docs/artifact-format.md says.

    Every input is checked before anything is written, so a failure leaves no half repository.
    """
    check_spec(spec)
    if not engine_file.is_file():
        raise ArtifactError(f"Triton repository {spec.name!r}: engine file {engine_file} does not exist")
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise UnsupportedModelError(
            f"Triton repository {spec.name!r}: {tokenizer_dir} has no tokenizer.json; "
            "only fast (Rust `tokenizers`) tokenizers can be served"
        )
    taken = [p for p in (dest / spec.name, dest / spec.tokenizer_name, dest / spec.model_name) if p.exists()]
    if taken:
        raise ArtifactError(f"Triton repository {spec.name!r}: {taken[0]} already exists")
    ensemble_version = _model_dir(dest, spec.name, render_ensemble_config(spec))
    (ensemble_version / ENSEMBLE_PLACEHOLDER).write_text(_PLACEHOLDER_TEXT, encoding="utf-8")
    tokenizer_version = _model_dir(dest, spec.tokenizer_name, render_tokenizer_config(spec))
    shutil.copyfile(TOKENIZER_MODEL_SOURCE, tokenizer_version / "model.py")
    shutil.copytree(tokenizer_dir, tokenizer_version / TOKENIZER_SUBDIR)
    model_version = _model_dir(dest, spec.model_name, render_model_config(spec))
    shutil.copyfile(engine_file, model_version / ENGINE_FILENAMES[spec.backend])
