"""Resolve model, tokenizer and calibration sources (file://, hf://, s3://) to local paths.

The hub path is the real `huggingface_hub` download with revision and token; nothing here
knows about test models.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubeformer_builder.errors import SourceError
from kubeformer_builder.storage import download_prefix, source_credentials

# What a hub download fetches: a model's configs, vocabularies and safetensors weights, or a
# dataset's data files.
_HUB_FILES = {
    "model": ["*.json", "*.txt", "*.model", "*.safetensors", "*/config.json"],
    "dataset": ["*.jsonl", "*.json", "*.csv", "*.parquet"],
}


def resolve_source(
    uri: str, revision: str, workdir: Path, endpoint: str | None, what: str, repo_type: str = "model"
) -> Path:
    """A local directory (or file) holding what `uri` names; `what` names the field in errors.

    repo_type: what an hf:// URI names, a "model" or a "dataset" repository. A dataset URI may
    name a file or folder inside the repository after ORG/NAME (hf://ORG/NAME/data/test.parquet).
    """
    scheme, _, rest = uri.partition("://")
    if scheme == "file":
        path = Path(rest)
        if not path.exists():
            raise SourceError(f"{what}: {uri} does not exist")
        return path
    if scheme == "s3":
        return download_prefix(uri, workdir / "s3-source", endpoint, source_credentials())
    if scheme == "hf":
        repo_id, inside = rest, ""
        if repo_type == "dataset":
            parts = rest.split("/", 2)
            repo_id, inside = "/".join(parts[:2]), (parts[2] if len(parts) > 2 else "").strip("/")
        return download_hub(repo_id, revision, workdir / "hf-source", what, repo_type, inside)
    raise SourceError(f"{what}: {uri!r} has an unknown scheme; use file://, hf:// or s3://")


def download_hub(
    repo_id: str, revision: str, dest: Path, what: str, repo_type: str = "model", inside: str = ""
) -> Path:
    """snapshot_download with HF_TOKEN; weights as safetensors where the repo has them.

    inside: only this file or folder of the repository (returned instead of the snapshot root).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        snapshot = snapshot_download(
            repo_id=repo_id,
            repo_type=repo_type,
            revision=revision,
            token=os.environ.get("HF_TOKEN") or None,
            local_dir=dest,
            allow_patterns=[inside, f"{inside}/*"] if inside else _HUB_FILES[repo_type],
        )
    except RepositoryNotFoundError as exc:
        raise SourceError(f"{what}: hf://{repo_id} not found or not accessible with this token") from exc
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(f"{what}: cannot download hf://{repo_id}@{revision}: {first_line}") from exc
    found = Path(snapshot) / inside
    if not found.exists():
        raise SourceError(f"{what}: hf://{repo_id} has no {inside!r} at revision {revision}")
    return found


def check_model_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise SourceError(f"{what}: {path} is not a directory holding a model")
    if not (path / "config.json").is_file():
        raise SourceError(f"{what}: {path} has no config.json; is this a Hugging Face model directory?")
    return path
