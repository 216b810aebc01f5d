"""The S3 side of object-storage state: :class:`~orchestrator.state.blobs.Blobs` on S3.

S3 gives compare-and-swap on single objects through conditional writes: ``put_object`` with
``IfNoneMatch="*"`` (create only if absent) or ``IfMatch=ETAG`` (replace only if unchanged); a
lost race answers 412 PreconditionFailed (or 409 ConditionalRequestConflict while another
conditional write is in flight). The client and the meaning of S3's errors come from the AWS
adaptor (``orchestrator.adaptors.aws``), which imports boto3 only when an ``s3://`` store is
opened; here they become ``StateError``s naming the permissions the state needs. The client
honours the usual AWS settings, including ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` for
S3-compatible servers.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from orchestrator.adaptors import aws
from orchestrator.errors import ProviderError, StateError
from orchestrator.state.blobs import Blob, PreconditionFailed

# Settings that change which account or endpoint a default client talks to.
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
)
_PERMISSIONS = "s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket"


@functools.lru_cache(maxsize=8)
def _client_for(settings: tuple[str | None, ...]) -> Any:
    # Clients are thread-safe and slow to build (they load the service model): share one per
    # distinct environment rather than building one per store.
    del settings  # only the cache key: boto3 reads the environment itself
    return aws.client("s3")


def default_client() -> Any:
    return _client_for(tuple(os.environ.get(name) for name in _CLIENT_ENV))


class S3Blobs:
    """Objects under ``s3://BUCKET/PREFIX``."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        try:
            self._client = client or default_client()
        except ProviderError as exc:
            raise StateError(f"cannot create an S3 client for {self.url}: {exc.message}") from exc

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, exc: Exception, what: str) -> StateError:
        code = aws.error_code(exc)
        kind = aws.classify(exc)
        if code == "NoSuchBucket":
            return StateError(
                f"the bucket of {self.url} does not exist",
                hint=f"create it first (aws s3 mb s3://{self.bucket}) or fix --state",
            )
        if kind in (aws.Failure.DENIED, aws.Failure.CREDENTIALS):
            return StateError(
                f"access denied to {self.url} ({what}): {code or exc}",
                hint=f"the state needs {_PERMISSIONS} on the bucket and prefix",
            )
        if code:
            return StateError(f"S3 refused {what} at {self.url}: {code}")
        return StateError(
            f"cannot reach S3 for {what} at {self.url}: {exc}",
            hint="check network access and AWS credentials (AWS_PROFILE, AWS_REGION)",
        )

    def _missing(self, exc: Exception) -> bool:
        """An absent key (not an absent bucket, which is an error)."""
        return aws.classify(exc) is aws.Failure.NOT_FOUND and aws.error_code(exc) != "NoSuchBucket"

    def get(self, name: str) -> Blob | None:
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=self._key(name))
            return Blob(reply["Body"].read(), str(reply["ETag"]))
        except Exception as exc:
            if not aws.is_sdk_error(exc):
                raise
            if self._missing(exc):
                return None
            raise self._error(exc, f"reading {name}") from exc

    def version(self, name: str) -> str | None:
        # A HEAD reply has no body: an absent bucket answers like an absent key (None), which
        # still differs from any version seen before, so a watcher notices it all the same.
        try:
            reply = self._client.head_object(Bucket=self.bucket, Key=self._key(name))
            return str(reply["ETag"])
        except Exception as exc:
            if not aws.is_sdk_error(exc):
                raise
            if self._missing(exc):
                return None
            raise self._error(exc, f"reading the version of {name}") from exc

    def put(
        self, name: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        conditions: dict[str, str] = {}
        if if_absent:
            conditions["IfNoneMatch"] = "*"
        if if_version is not None:
            conditions["IfMatch"] = if_version
        try:
            reply = self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(name),
                Body=data,
                ContentType="application/json",
                **conditions,
            )
            return str(reply["ETag"])
        except Exception as exc:
            if not aws.is_sdk_error(exc):
                raise
            lost = aws.classify(exc) is aws.Failure.LOST_RACE
            if lost or (if_version is not None and self._missing(exc)):
                raise PreconditionFailed(f"{name} changed at {self.url}") from exc
            raise self._error(exc, f"writing {name}") from exc

    def delete(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except Exception as exc:
            if not aws.is_sdk_error(exc):
                raise
            raise self._error(exc, f"deleting {name}") from exc

    def list(self, prefix: str) -> list[str]:
        start = len(self._key(""))
        names: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                names.extend(str(item["Key"])[start:] for item in page.get("Contents", []))
        except Exception as exc:
            if not aws.is_sdk_error(exc):
                raise
            raise self._error(exc, f"listing {prefix}") from exc
        return names
