import json

import pytest

from kubeformer_builder.errors import ArtifactError
from kubeformer_builder.manifest import (
    Manifest,
    list_files,
    load_manifest,
    parse_manifest,
    verify_artifact,
    write_manifest,
)


def make_artifact(root):
    (root / "model_repository" / "m" / "1").mkdir(parents=True)
    (root / "model_repository" / "m" / "1" / "model.onnx").write_bytes(b"weights" * 100)
    (root / "report.json").write_text("{}")
    manifest = Manifest(
        "k" * 64, "m", "feature-extraction", "onnxruntime", "fp32", "fp32", {"a": 1}, {}, list_files(root)
    )
    write_manifest(root, manifest)
    return manifest


def test_roundtrip_lists_every_file_but_itself(tmp_path):
    written = make_artifact(tmp_path)
    loaded = verify_artifact(tmp_path)
    assert loaded == written
    assert [f.path for f in loaded.files] == ["model_repository/m/1/model.onnx", "report.json"]
    assert loaded.size_bytes == 702


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "report.json").unlink(), "report.json is listed in manifest.json but missing"),
        (
            lambda root: (root / "report.json").write_text("{ }"),
            "report.json has 3 bytes, manifest.json says 2",
        ),
        (lambda root: (root / "report.json").write_text("[]"), "report.json sha256"),
    ],
)
def test_verify_names_the_damaged_file(tmp_path, damage, message):
    make_artifact(tmp_path)
    damage(tmp_path)
    with pytest.raises(ArtifactError, match=message):
        verify_artifact(tmp_path)


def test_missing_manifest_means_no_artifact(tmp_path):
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        load_manifest(tmp_path)


def test_unknown_schema_version_is_refused(tmp_path):
    make_artifact(tmp_path)
    body = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**body, "schema_version": 99}))
    with pytest.raises(ArtifactError, match="schema_version 99 is not supported"):
        load_manifest(tmp_path)


def test_cpu_block_roundtrips_and_older_manifests_have_none(tmp_path):
    cpu = {"isa": "avx512_vnni", "flags": ["avx512_vnni"], "model": "x", "int8_scheme": None}
    manifest = Manifest("k" * 64, "m", "feature-extraction", "onnxruntime", "fp32", "fp32", {}, {}, (), cpu)
    assert parse_manifest(manifest.to_json(), "here").cpu == cpu
    older = json.loads(manifest.to_json())
    del older["cpu"]
    assert parse_manifest(json.dumps(older), "here").cpu is None
