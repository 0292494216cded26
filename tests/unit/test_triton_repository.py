"""Every rendered config.pbtxt parses as Triton's own ModelConfig and says what the artifact format says."""

from __future__ import annotations

import dataclasses
import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from kubeformer_builder.config import Backend, Task, Truncation
from kubeformer_builder.errors import ArtifactError, ConfigError, UnsupportedModelError
from kubeformer_builder.triton.repository import (
    RepositorySpec,
    render_ensemble_config,
    render_model_config,
    render_tokenizer_config,
    spec_problems,
    write_repository,
)

Config = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType
OUTPUT_DIMS = {
    Task.TEXT_CLASSIFICATION: {"LOGITS": [3]},
    Task.FEATURE_EXTRACTION: {"EMBEDDING": [384]},
    Task.TOKEN_CLASSIFICATION: {"LOGITS": [-1, 9]},
    Task.QUESTION_ANSWERING: {"START_LOGITS": [-1], "END_LOGITS": [-1]},
}
LABELS = {
    Task.TEXT_CLASSIFICATION: {0: "négatif", 1: 'say "hi"', 2: "back\\slash"},
    Task.TOKEN_CLASSIFICATION: {i: f"L{i}" for i in range(9)},
}
CASES = [(task, backend) for task in Task for backend in Backend]
TEXT_INPUTS = {
    Task.QUESTION_ANSWERING: ["QUESTION", "CONTEXT"],
    Task.TEXT_CLASSIFICATION: ["TEXT", "TEXT_PAIR"],
}


def per_task_outputs(task: Task) -> dict[str, tuple[int, list[int]]]:
    """What the tokenizer adds to the ensemble's outputs beside the model's."""
    outputs = {}
    if task in (Task.TOKEN_CLASSIFICATION, Task.QUESTION_ANSWERING):
        outputs["OFFSETS"] = (DataType.TYPE_INT32, [-1, 2])
    if task is Task.QUESTION_ANSWERING:
        outputs["SAMPLE_INDEX"] = (DataType.TYPE_INT32, [1])
    return outputs


def make_spec(task: Task = Task.TEXT_CLASSIFICATION, backend: Backend = Backend.ONNXRUNTIME, **changes):
    spec = RepositorySpec(
        name="minilm",
        task=task,
        model_input_names=("input_ids", "attention_mask", "token_type_ids"),
        max_batch_size=32,
        sequence_buckets=(16, 32, 64, 128),
        max_sequence_length=128,
        truncation=Truncation.TRUNCATE,
        id2label=LABELS.get(task),
        output_dims=OUTPUT_DIMS[task],
        backend=backend,
        preferred_batch_sizes=(8, 16),
        max_queue_delay_us=500,
        function_to_apply="sigmoid" if task is Task.TEXT_CLASSIFICATION else None,
    )
    return dataclasses.replace(spec, **changes)


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, Config())


def tensors(items) -> dict[str, tuple[int, list[int]]]:
    return {item.name: (item.data_type, list(item.dims)) for item in items}


def parameters(config) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.mark.parametrize(("task", "backend"), CASES)
def test_ensemble_routes_text_through_tokenizer_and_model(task, backend):
    config = parse(render_ensemble_config(make_spec(task, backend)))
    assert (config.name, config.platform, config.max_batch_size) == ("minilm", "ensemble", 32)
    text_inputs = TEXT_INPUTS.get(task, ["TEXT"])
    assert tensors(config.input) == {name: (DataType.TYPE_STRING, [1]) for name in text_inputs}
    assert [item.name for item in config.input if item.optional] == (
        ["TEXT_PAIR"] if "TEXT_PAIR" in text_inputs else []
    )
    expected = {name: (DataType.TYPE_FP32, dims) for name, dims in OUTPUT_DIMS[task].items()}
    expected |= per_task_outputs(task)
    assert tensors(config.output) == expected
    tokenizer, model = config.ensemble_scheduling.step
    assert (tokenizer.model_name, model.model_name) == ("minilm_tokenizer", "minilm_model")
    assert sorted(tokenizer.input_map) == sorted(text_inputs)
    assert dict(model.input_map) == {name: name for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert set(model.output_map) == set(OUTPUT_DIMS[task])
    assert set(per_task_outputs(task)) <= set(tokenizer.output_map)


@pytest.mark.parametrize("task", list(Task))
def test_ensemble_parameters_carry_task_labels_and_max_length(task):
    values = parameters(parse(render_ensemble_config(make_spec(task))))
    assert values["task"] == task.value
    assert values["max_sequence_length"] == "128"
    if task in LABELS:
        assert json.loads(values["id2label"]) == {str(k): v for k, v in LABELS[task].items()}
    else:
        assert "id2label" not in values
    assert values.get("function_to_apply") == ("sigmoid" if task is Task.TEXT_CLASSIFICATION else None)


@pytest.mark.parametrize("task", list(Task))
def test_tokenizer_config_is_a_batched_python_model_with_its_parameters(task):
    spec = make_spec(task, truncation=Truncation.REFUSE, model_input_names=("input_ids", "attention_mask"))
    config = parse(render_tokenizer_config(spec))
    assert (config.name, config.backend, config.max_batch_size) == ("minilm_tokenizer", "python", 32)
    assert config.HasField("dynamic_batching")
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    outputs = tensors(config.output)
    assert outputs.pop("input_ids") == outputs.pop("attention_mask") == (DataType.TYPE_INT64, [-1])
    assert outputs == per_task_outputs(task)
    assert tensors(config.input) == {n: (DataType.TYPE_STRING, [1]) for n in TEXT_INPUTS.get(task, ["TEXT"])}
    stride = {"doc_stride": "64"} if task is Task.QUESTION_ANSWERING else {}  # min(128 // 2, 128)
    assert parameters(config) == {
        "sequence_buckets": "16,32,64,128",
        "truncation": "refuse",
        "model_input_names": "input_ids,attention_mask",
        "task": task.value,
        **stride,
    }


@pytest.mark.parametrize(("task", "backend"), CASES)
def test_model_config_names_the_engine_and_batches_dynamically(task, backend):
    config = parse(render_model_config(make_spec(task, backend)))
    assert (config.name, config.max_batch_size) == ("minilm_model", 32)
    if backend is Backend.ONNXRUNTIME:
        assert (config.backend, config.platform) == ("onnxruntime", "")
        assert config.default_model_filename == "model.onnx"
        assert parameters(config) == {"intra_op_thread_count": "0"}
        assert config.runtime == ""  # Triton must pick the native backend where there is one
    else:
        assert (config.backend, config.platform) == ("", "tensorrt_plan")
        assert config.default_model_filename == "model.plan"
        assert parameters(config) == {}
    assert all(value == (DataType.TYPE_INT64, [-1]) for value in tensors(config.input).values())
    assert list(tensors(config.input)) == ["input_ids", "attention_mask", "token_type_ids"]
    expected = {name: (DataType.TYPE_FP32, dims) for name, dims in OUTPUT_DIMS[task].items()}
    assert tensors(config.output) == expected
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500


def test_model_config_without_preferred_sizes_still_batches():
    config = parse(render_model_config(make_spec(preferred_batch_sizes=())))
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "bad name"}, "name:"),
        ({"model_input_names": ("attention_mask",)}, "model_input_names:"),
        ({"model_input_names": ("input_ids", "position_ids")}, "model_input_names:"),
        ({"max_batch_size": 0}, "max_batch_size:"),
        ({"sequence_buckets": (64, 32, 128)}, "sequence_buckets:"),
        ({"sequence_buckets": (16, 32)}, "sequence_buckets:"),
        ({"preferred_batch_sizes": (8, 64)}, "preferred_batch_sizes:"),
        ({"max_queue_delay_us": -1}, "max_queue_delay_us:"),
        ({"output_dims": {"EMBEDDING": [3]}}, "output_dims:"),
        ({"output_dims": {"LOGITS": [-1, 3]}}, "output_dims.LOGITS:"),
        ({"id2label": None}, "id2label:"),
        ({"id2label": {0: "a", 1: "b"}}, "id2label:"),
        ({"function_to_apply": "tanh"}, "function_to_apply:"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(changes, field):
    spec = make_spec(**changes)
    assert any(problem.startswith(field) for problem in spec_problems(spec))
    with pytest.raises(ConfigError, match=field):
        render_ensemble_config(spec)


def test_every_problem_is_reported_at_once():
    spec = make_spec(max_batch_size=0, max_queue_delay_us=-5, id2label=None)
    assert len(spec_problems(spec)) == 4  # preferred sizes now exceed max_batch_size too


def test_per_token_outputs_need_a_sequence_dim():
    fixed_length = {"START_LOGITS": [7], "END_LOGITS": [-1]}
    assert spec_problems(make_spec(Task.QUESTION_ANSWERING, output_dims=fixed_length))
    assert spec_problems(make_spec(Task.FEATURE_EXTRACTION, output_dims={"EMBEDDING": [-1]}))
    assert spec_problems(make_spec(Task.FEATURE_EXTRACTION, id2label={0: "x"}))
    assert spec_problems(make_spec(Task.TOKEN_CLASSIFICATION, function_to_apply="softmax"))
    assert not spec_problems(make_spec(Task.QUESTION_ANSWERING))


@pytest.fixture
def inputs(tmp_path):
    engine = tmp_path / "exported.onnx"
    engine.write_bytes(b"onnx bytes")
    tokenizer = tmp_path / "tok"
    tokenizer.mkdir()
    (tokenizer / "tokenizer.json").write_text("{}")
    (tokenizer / "tokenizer_config.json").write_text("{}")
    return engine, tokenizer


@pytest.mark.parametrize("backend", list(Backend))
def test_write_repository_lays_out_the_three_models(inputs, tmp_path, backend):
    engine, tokenizer = inputs
    dest = tmp_path / "model_repository"
    spec = make_spec(backend=backend)
    write_repository(spec, engine, tokenizer, dest)
    engine_name = "model.onnx" if backend is Backend.ONNXRUNTIME else "model.plan"
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == [
        "minilm/1/README",
        "minilm/config.pbtxt",
        f"minilm_model/1/{engine_name}",
        "minilm_model/config.pbtxt",
        "minilm_tokenizer/1/model.py",
        "minilm_tokenizer/1/tokenizer/tokenizer.json",
        "minilm_tokenizer/1/tokenizer/tokenizer_config.json",
        "minilm_tokenizer/config.pbtxt",
    ]
    assert (dest / "minilm_model/1" / engine_name).read_bytes() == b"onnx bytes"
    assert "class TritonPythonModel" in (dest / "minilm_tokenizer/1/model.py").read_text()
    assert (dest / "minilm/config.pbtxt").read_text() == render_ensemble_config(spec)
    for name in ("minilm", "minilm_tokenizer", "minilm_model"):
        assert parse((dest / name / "config.pbtxt").read_text()).name == name


def test_write_repository_refuses_missing_inputs_before_writing(inputs, tmp_path):
    engine, tokenizer = inputs
    dest = tmp_path / "out"
    with pytest.raises(ArtifactError, match=r"missing\.onnx does not exist"):
        write_repository(make_spec(), tmp_path / "missing.onnx", tokenizer, dest)
    (tokenizer / "tokenizer.json").unlink()
    with pytest.raises(UnsupportedModelError, match=r"no tokenizer\.json"):
        write_repository(make_spec(), engine, tokenizer, dest)
    assert not dest.exists()


def test_write_repository_refuses_to_overwrite(inputs, tmp_path):
    engine, tokenizer = inputs
    write_repository(make_spec(), engine, tokenizer, tmp_path / "out")
    with pytest.raises(ArtifactError, match="already exists"):
        write_repository(make_spec(), engine, tokenizer, tmp_path / "out")
