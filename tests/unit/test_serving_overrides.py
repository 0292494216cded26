"""Serving-time overrides change the engine model's config only, and refuse impossible requests."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from kubeformer_builder.config import Backend, Task
from kubeformer_builder.errors import BackendUnavailableError, ConfigError
from kubeformer_builder.serving.overrides import InstanceKind, Overrides, apply_overrides
from kubeformer_builder.triton.repository import write_repository
from tests.unit.test_triton_repository import make_spec

Group = model_config_pb2.ModelInstanceGroup


def stub_repository(root, spec, engine_name: str = "model.onnx"):
    """A repository written from a one-byte engine and an empty tokenizer: configs are what matter."""
    engine = root / engine_name
    engine.write_bytes(b"x")
    tokenizer = root / "tok"
    tokenizer.mkdir()
    (tokenizer / "tokenizer.json").write_text("{}")
    write_repository(spec, engine, tokenizer, root / "repo")
    return root / "repo"


@pytest.fixture
def repository(tmp_path):
    return stub_repository(tmp_path, make_spec())


def read(repository, name):
    return text_format.Parse((repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_overrides_reach_the_engine_and_nothing_else(repository):
    before = {name: read(repository, name) for name in ("minilm", "minilm_tokenizer")}
    overrides = Overrides(InstanceKind.CPU, 2, 750, (4, 32), 1)
    assert apply_overrides(repository, overrides, gpu=False) == ["minilm_model"]
    config = read(repository, "minilm_model")
    assert [(g.kind, g.count) for g in config.instance_group] == [(Group.KIND_CPU, 2)]
    assert config.dynamic_batching.max_queue_delay_microseconds == 750
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 32]
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert {name: read(repository, name) for name in before} == before


@pytest.mark.parametrize(("gpu", "kind"), [(False, Group.KIND_CPU), (True, Group.KIND_GPU)])
def test_auto_places_the_engine_where_the_machine_can_run_it(repository, gpu, kind):
    apply_overrides(repository, Overrides(), gpu=gpu)
    config = read(repository, "minilm_model")
    assert [g.kind for g in config.instance_group] == [kind]
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]  # untouched without an override


def test_gpu_without_a_gpu_is_refused(repository):
    with pytest.raises(ConfigError, match="no NVIDIA GPU"):
        apply_overrides(repository, Overrides(InstanceKind.GPU), gpu=False)


def test_preferred_sizes_above_max_batch_are_refused(repository):
    with pytest.raises(ConfigError, match="exceed max_batch_size 32"):
        apply_overrides(repository, Overrides(preferred_batch_sizes=(64,)), gpu=False)


def test_ragged_batches_are_allowed_only_on_the_served_copy_of_onnxruntime_engines(repository):
    apply_overrides(repository, Overrides(), gpu=False, ragged=True)
    assert all(tensor.allow_ragged_batch for tensor in read(repository, "minilm_model").input)
    assert not any(tensor.allow_ragged_batch for tensor in read(repository, "minilm_tokenizer").input)


def test_tensorrt_engines_cannot_be_served_by_the_local_triton(tmp_path):
    repository = stub_repository(tmp_path, make_spec(backend=Backend.TENSORRT), "model.plan")
    with pytest.raises(BackendUnavailableError, match="tensorrt_plan engine needs its native Triton backend"):
        apply_overrides(repository, Overrides(), gpu=False, ragged=True)


def test_doc_stride_reaches_only_question_answering_tokenizers(tmp_path):
    (tmp_path / "qa").mkdir()
    (tmp_path / "cls").mkdir()
    qa = stub_repository(tmp_path / "qa", make_spec(Task.QUESTION_ANSWERING))
    changed = apply_overrides(qa, Overrides(doc_stride=32), gpu=False)
    assert changed == ["minilm_model", "minilm_tokenizer"]
    assert read(qa, "minilm_tokenizer").parameters["doc_stride"].string_value == "32"
    cls = stub_repository(tmp_path / "cls", make_spec())
    assert apply_overrides(cls, Overrides(doc_stride=32), gpu=False) == ["minilm_model"]
    assert "doc_stride" not in read(cls, "minilm_tokenizer").parameters


@pytest.mark.parametrize("stride", [-1, 128])
def test_doc_stride_outside_the_window_is_refused(tmp_path, stride):
    qa = stub_repository(tmp_path, make_spec(Task.QUESTION_ANSWERING))
    with pytest.raises(ConfigError, match=rf"minilm_tokenizer: doc stride {stride} must be in 0\.\.127"):
        apply_overrides(qa, Overrides(doc_stride=stride), gpu=False)
