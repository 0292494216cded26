"""Bad input reaches the user as one line naming the cause, a non-zero exit, and nothing partial."""

import json
import shutil
import subprocess
import sys

import pytest
import transformers

from kubeformer_builder.config import Task
from tests.fixtures.processes import free_port

pytestmark = pytest.mark.integration


def kubeformer(*args, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "kubeformer_builder.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def assert_refused(result, exit_code: int, *fragments: str) -> None:
    assert result.returncode == exit_code, result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("kubeformer build: error:")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in error_lines[0]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "failed" and outcome["message"] in error_lines[0]


def build_args(model, output, *extra, task="text-classification"):
    small = ["--batch", "1,2,4", "--sequence", "1,16,32", "--calibration-samples", "16"]
    return ["build", model, "--task", task, "--output", str(output), *small, *extra]


def test_unknown_local_source(tmp_path):
    result = kubeformer(*build_args("file:///nowhere/model", tmp_path / "out"))
    assert_refused(result, 3, "model.source: file:///nowhere/model does not exist")
    assert not (tmp_path / "out").exists()


def test_unknown_scheme_is_a_config_error(tmp_path):
    result = kubeformer(*build_args("ftp://host/model", tmp_path / "out"))
    assert_refused(result, 2, "model.source: 'ftp://host/model' must start with hf://, s3:// or file://")


def test_unsupported_architecture_lists_supported(tmp_path):
    model_dir = tmp_path / "gpt2"
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=100)
    transformers.GPT2Model(config).save_pretrained(model_dir)
    result = kubeformer(*build_args(f"file://{model_dir}", tmp_path / "out"))
    assert_refused(result, 4, "architecture 'gpt2' is not supported", "bert", "roberta")
    assert not (tmp_path / "out").exists()


def test_task_that_does_not_fit_the_model(tiny_model, tmp_path):
    base_model = tiny_model("bert", Task.FEATURE_EXTRACTION)  # no classification head
    result = kubeformer(*build_args(f"file://{base_model}", tmp_path / "out", task="question-answering"))
    assert_refused(result, 4, "model.task: question-answering needs a trained task head", "qa_outputs")
    assert not (tmp_path / "out").exists()


def test_shapes_out_of_order(tmp_path):
    result = kubeformer("build", "file:///m", "--task", "feature-extraction", "--output", str(tmp_path / "o"),
                        "--sequence", "64,32,16")  # fmt: skip
    assert_refused(result, 2, "optimization.shapes.sequence: need min <= opt <= max, got 64/32/16")


def test_unreadable_calibration_source(tiny_model, tmp_path):
    model = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    result = kubeformer(
        *build_args(f"file://{model}", tmp_path / "out", "--calibration", "file:///no/texts.jsonl")
    )
    assert_refused(result, 3, "calibration.source: file:///no/texts.jsonl does not exist")
    assert not (tmp_path / "out").exists()


def test_calibration_of_the_wrong_type(tiny_model, tmp_path):
    texts = tmp_path / "numbers.json"
    texts.write_text(json.dumps(list(range(40))))
    model = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    result = kubeformer(*build_args(f"file://{model}", tmp_path / "out", "--calibration", f"file://{texts}"))
    assert_refused(result, 3, "row 0 holds int, expected text")


def test_unreachable_s3(tiny_model, tmp_path):
    model = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    result = kubeformer(*build_args(f"file://{model}", "s3://bucket/a", "--s3-endpoint", endpoint), env=env)
    assert_refused(result, 5, "cannot reach the S3 endpoint", endpoint)


def test_wrong_s3_credentials(s3_server, tiny_model):
    model = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    bucket = s3_server.new_bucket()
    env = {"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": "wrong-secret"}
    args = build_args(f"file://{model}", f"s3://{bucket}/a", "--s3-endpoint", s3_server.endpoint)
    result = kubeformer(*args, env=env)
    assert_refused(result, 5, "S3 refused the credentials", "SignatureDoesNotMatch")
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)


def test_termination_log_carries_the_failure(tmp_path):
    log = tmp_path / "termination-log"
    result = kubeformer(
        *build_args("file:///nowhere", tmp_path / "o"), env={"KUBEFORMER_TERMINATION_LOG": str(log)}
    )
    assert result.returncode == 3
    outcome = json.loads(log.read_text())
    assert outcome == {"status": "failed", "reason": "SourceUnavailable", "message": outcome["message"]}
    assert "does not exist" in outcome["message"]


def test_fp16_without_a_gpu_is_refused(tiny_model, tmp_path):
    model = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    result = kubeformer(*build_args(f"file://{model}", tmp_path / "out", "--precision", "fp16"))
    assert_refused(result, 8, "fp16 runs fast only on a GPU")
    assert not (tmp_path / "out").exists()


def test_tensorrt_without_a_gpu_is_refused(tmp_path):
    result = kubeformer(*build_args("file:///m", tmp_path / "out", "--backend", "tensorrt"))
    assert_refused(result, 8, "optimization.backend: tensorrt needs")


def test_truncated_weights_are_named(tiny_model, tmp_path):
    model = tmp_path / "truncated"
    shutil.copytree(tiny_model("bert", Task.TEXT_CLASSIFICATION), model)
    (weights,) = model.glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = kubeformer(*build_args(f"file://{model}", tmp_path / "out"))
    assert_refused(result, 3, weights.name)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_sequence_max_above_the_model_limit_is_refused_before_export(tiny_model, tmp_path):
    model = tiny_model("bert-64-positions", Task.FEATURE_EXTRACTION)
    result = kubeformer(
        *build_args(f"file://{model}", tmp_path / "out", "--sequence", "1,32,128", task="feature-extraction")
    )
    assert_refused(
        result,
        2,
        "optimization.shapes.sequence.max: 128 is above this model's limit of 64 tokens",
        "position embeddings 64",
    )
    assert "stage export" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_evaluation_labels_the_model_does_not_know(tiny_model, tmp_path):
    rows = tmp_path / "test.jsonl"
    rows.write_text("".join(json.dumps({"text": f"text {i}", "label": label}) + "\n" for i, label in
                            enumerate(["positive", "sarcastic", 2, 9])))  # fmt: skip
    model = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    result = kubeformer(*build_args(f"file://{model}", tmp_path / "out", "--evaluation", f"file://{rows}"))
    assert_refused(
        result, 3, "optimization.evaluation.labelColumn: labels the model does not know: 'sarcastic', 9"
    )
    assert "stage export" not in result.stderr  # refused before any export work
    assert not (tmp_path / "out").exists()


def test_unreadable_evaluation_source(tiny_model, tmp_path):
    rows = tmp_path / "test.parquet"
    rows.write_text("this is not parquet")
    model = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    result = kubeformer(*build_args(f"file://{model}", tmp_path / "out", "--evaluation", f"file://{rows}"))
    assert_refused(result, 3, f"optimization.evaluation.source: cannot read {rows}")
    assert "stage export" not in result.stderr and not (tmp_path / "out").exists()


def test_labeled_metric_without_evaluation_data(tmp_path):
    result = kubeformer(*build_args("file:///m", tmp_path / "out", "--gate-metric", "accuracy"))
    assert_refused(result, 2, "optimization.accuracyGate.metric: 'accuracy' scores the model against labels")
