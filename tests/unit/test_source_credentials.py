"""s3:// model sources read with the model's own keys (model.credentialsSecret), not the storage's."""

from __future__ import annotations

from pathlib import Path

from kubeformer_builder import sources, storage


def test_source_keys_come_from_their_own_variables(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "storage-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "storage-secret")
    monkeypatch.delenv("KUBEFORMER_SOURCE_AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("KUBEFORMER_SOURCE_AWS_SECRET_ACCESS_KEY", raising=False)
    assert storage.source_credentials() is None  # the storage's own keys then
    monkeypatch.setenv("KUBEFORMER_SOURCE_AWS_ACCESS_KEY_ID", "source-id")
    assert storage.source_credentials() is None  # half a key pair is none
    monkeypatch.setenv("KUBEFORMER_SOURCE_AWS_SECRET_ACCESS_KEY", "source-secret")
    keys = storage.source_credentials()
    assert (keys.access_key, keys.secret_key) == ("source-id", "source-secret")
    assert "source-secret" not in repr(keys)


def test_an_s3_source_is_downloaded_with_the_source_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBEFORMER_SOURCE_AWS_ACCESS_KEY_ID", "source-id")
    monkeypatch.setenv("KUBEFORMER_SOURCE_AWS_SECRET_ACCESS_KEY", "source-secret")
    seen = {}

    def download_prefix(uri: str, dest: Path, endpoint: str | None, credentials=None) -> Path:
        seen.update(uri=uri, endpoint=endpoint, credentials=credentials)
        return dest

    monkeypatch.setattr(sources, "download_prefix", download_prefix)
    sources.resolve_source("s3://models/bert", "main", tmp_path, "http://s3:8333", "model.source")
    assert seen["uri"] == "s3://models/bert" and seen["endpoint"] == "http://s3:8333"
    assert seen["credentials"].access_key == "source-id"
