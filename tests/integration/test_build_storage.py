"""Builds that read models from and write artifacts to a real S3 server (SeaweedFS)."""

import json

import pytest

from kubeformer_builder import storage
from kubeformer_builder.config import Task
from kubeformer_builder.manifest import parse_manifest
from kubeformer_builder.pipeline import build
from tests.fixtures.builds import tiny_config

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


def upload_model(server, bucket, model_dir):
    client = server.client()
    for path in model_dir.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"models/tiny/{path.relative_to(model_dir).as_posix()}")
    return f"s3://{bucket}/models/tiny"


def keys_with_times(server, bucket, prefix):
    listing = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"]: item["LastModified"] for item in listing}


def test_s3_source_to_s3_artifact_then_cache_hit(s3_env, tiny_model):
    bucket = s3_env.new_bucket()
    source = upload_model(s3_env, bucket, tiny_model("bert", Task.FEATURE_EXTRACTION))
    config = tiny_config(source, Task.FEATURE_EXTRACTION, precision="fp32", s3_endpoint=s3_env.endpoint)
    output = f"s3://{bucket}/artifacts/default/tiny/key"

    first = build(config, output)
    objects = keys_with_times(s3_env, bucket, "artifacts/")
    manifest = parse_manifest(
        storage.read_object(f"{output}/manifest.json", s3_env.endpoint).decode(), output
    )
    assert {f"artifacts/default/tiny/key/{entry.path}" for entry in manifest.files} | {
        "artifacts/default/tiny/key/manifest.json"
    } == set(objects)
    assert manifest.cache_key == first.cache_key and not first.cached

    second = build(config, output)
    assert second.cached and second.benchmark == first.benchmark
    assert keys_with_times(s3_env, bucket, "artifacts/") == objects  # nothing re-uploaded
    report = json.loads(storage.read_object(f"{output}/report.json", s3_env.endpoint))
    assert report["cache_key"] == first.cache_key
