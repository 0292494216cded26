"""S3 object storage: the only module that talks to it.

Credentials come from the standard AWS environment variables (in a Job: secretKeyRef env),
never from flags, so they never show up in process listings or Job args. Uploads put the
manifest last: an artifact is visible only once complete.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kubeformer_builder.errors import StorageError
from kubeformer_builder.manifest import MANIFEST_NAME

_REFUSED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # prefix without leading/trailing slashes; may be empty

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def child(self, relative: str) -> str:
        return str(PurePosixPath(self.key, relative)) if self.key else relative


def parse_s3_uri(uri: str) -> S3Location:
    if not uri.startswith("s3://"):
        raise StorageError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} names no bucket")
    return S3Location(bucket, key.strip("/"))


@dataclass(frozen=True)
class Credentials:
    """Explicit keys, for a caller that read them from a Secret (the operator); repr never shows them."""

    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return "Credentials(***)"


SOURCE_PREFIX = "KUBEFORMER_SOURCE_"


def source_credentials() -> Credentials | None:
    """Keys for s3:// model, tokenizer and calibration sources when they differ from the artifact
    storage's: KUBEFORMER_SOURCE_AWS_ACCESS_KEY_ID and KUBEFORMER_SOURCE_AWS_SECRET_ACCESS_KEY (the
    operator sets them from the object's model.credentialsSecret). None: the storage's own (AWS_*)."""
    key_id = os.environ.get(f"{SOURCE_PREFIX}AWS_ACCESS_KEY_ID")
    secret = os.environ.get(f"{SOURCE_PREFIX}AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        return Credentials(key_id, secret, os.environ.get(f"{SOURCE_PREFIX}AWS_SESSION_TOKEN"))
    return None


def make_client(endpoint: str | None, region: str | None = None, credentials: Credentials | None = None):
    """A boto3 client with bounded retries and short timeouts: an outage fails in seconds, not hours.

    Without `credentials`, the AWS_* environment variables are used (a Job gets them from a Secret)
    or, without those, boto3's own chain (instance or workload identity).
    """
    key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if credentials is None and key_id and secret:
        credentials = Credentials(key_id, secret, os.environ.get("AWS_SESSION_TOKEN"))
    return _cached_client(
        endpoint or os.environ.get("AWS_ENDPOINT_URL") or None,
        region or os.environ.get("AWS_REGION") or "us-east-1",
        credentials,
    )


@functools.lru_cache(maxsize=64)
def _cached_client(endpoint: str | None, region: str, credentials: Credentials | None):
    """One client per endpoint, region and identity: clients are thread-safe and costly to make
    (tens of MB, tens of ms), and the operator looks up artifacts for many objects from many threads.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"},
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=config,
        aws_access_key_id=credentials.access_key if credentials else None,
        aws_secret_access_key=credentials.secret_key if credentials else None,
        aws_session_token=credentials.session_token if credentials else None,
    )


def describe_failure(exc: Exception, uri: str, endpoint: str | None) -> StorageError:
    """One line naming the cause: unreachable endpoint, refused credentials, missing bucket/key."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f"{uri} (endpoint {endpoint or 'AWS default'})"
    if isinstance(exc, EndpointConnectionError):
        return StorageError(f"storage: cannot reach the S3 endpoint for {where}: {exc}")
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"storage: no S3 credentials for {where}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _REFUSED_CODES:
            return StorageError(f"storage: S3 refused the credentials for {where} ({code})")
        if code in {"NoSuchBucket", "404", "NoSuchKey"}:
            return StorageError(f"storage: {where} does not exist ({code})")
        return StorageError(f"storage: S3 error for {where}: {code} {exc}")
    return StorageError(f"storage: S3 failure for {where}: {type(exc).__name__}: {exc}")


def _guard(action, uri: str, endpoint: str | None):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return action()
    except (BotoCoreError, ClientError) as exc:
        raise describe_failure(exc, uri, endpoint) from exc


def read_object(uri: str, endpoint: str | None, credentials: Credentials | None = None) -> bytes | None:
    """The object's bytes, or None when it does not exist (other failures raise)."""
    from botocore.exceptions import ClientError

    location, client = parse_s3_uri(uri), make_client(endpoint, credentials=credentials)
    try:
        return client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in {"NoSuchKey", "404"}:
            return None
        raise describe_failure(exc, uri, endpoint) from exc
    except Exception as exc:
        raise describe_failure(exc, uri, endpoint) from exc


def download_prefix(
    uri: str, dest: Path, endpoint: str | None, credentials: Credentials | None = None
) -> Path:
    """Copy every object under the prefix into dest, keeping relative paths; `credentials` as in
    `make_client` (None: the AWS_* environment)."""
    location, client = parse_s3_uri(uri), make_client(endpoint, credentials=credentials)
    prefix = f"{location.key}/" if location.key else ""

    def fetch() -> int:
        count = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :]
                if not relative or relative.endswith("/"):
                    continue
                target = dest / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(location.bucket, item["Key"], str(target))
                count += 1
        return count

    if _guard(fetch, uri, endpoint) == 0:
        raise StorageError(f"storage: {uri} holds no objects (endpoint {endpoint or 'AWS default'})")
    return dest


def upload_dir(src: Path, uri: str, endpoint: str | None) -> None:
    """Upload every file under src; the manifest goes last so readers never see a partial artifact."""
    location, client = parse_s3_uri(uri), make_client(endpoint)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == MANIFEST_NAME)

    def push() -> None:
        for path in files:
            client.upload_file(str(path), location.bucket, location.child(path.relative_to(src).as_posix()))

    _guard(push, uri, endpoint)


def delete_prefix(uri: str, endpoint: str | None, credentials: Credentials | None = None) -> None:
    """Remove everything under a prefix, manifest first, so a half-deleted artifact never looks complete."""
    location, client = parse_s3_uri(uri), make_client(endpoint, credentials=credentials)
    prefix = f"{location.key}/" if location.key else ""

    def remove() -> None:
        keys = [
            item["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=location.bucket, Prefix=prefix
            )
            for item in page.get("Contents", [])
        ]
        keys.sort(key=lambda key: not key.endswith(MANIFEST_NAME))
        for key in keys:
            client.delete_object(Bucket=location.bucket, Key=key)

    _guard(remove, uri, endpoint)
