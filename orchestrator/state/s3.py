"""The S3 side of object-storage state: :class:`~orchestrator.state.blobs.Blobs` on boto3.

S3 gives compare-and-swap on single objects through conditional writes: ``put_object`` with
``IfNoneMatch="*"`` (create only if absent) or ``IfMatch=ETAG`` (replace only if unchanged); a
lost race answers 412 PreconditionFailed (or 409 ConditionalRequestConflict while another
conditional write is in flight). boto3 is imported here and nowhere else in ``state``, and only
when an ``s3://`` store is opened. The client honours the usual AWS settings, including
``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` for S3-compatible servers.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.errors import StateError
from orchestrator.state.blobs import Blob, PreconditionFailed

_LOST_RACE = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


# Settings that change which account or endpoint a default client talks to.
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
)


@functools.lru_cache(maxsize=8)
def _client_for(settings: tuple[str | None, ...]) -> Any:
    # Clients are thread-safe and slow to build (they load the service model): share one per
    # distinct environment rather than building one per store.
    del settings  # only the cache key: boto3 reads the environment itself
    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def default_client() -> Any:
    return _client_for(tuple(os.environ.get(name) for name in _CLIENT_ENV))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Blobs:
    """Objects under ``s3://BUCKET/PREFIX``."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        try:
            self._client = client or default_client()
        except BotoCoreError as exc:
            raise StateError(f"cannot create an S3 client for {self.url}: {exc}") from exc

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, exc: Exception, what: str) -> StateError:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return StateError(
                    f"the bucket of {self.url} does not exist",
                    hint=f"create it first (aws s3 mb s3://{self.bucket}) or fix --state",
                )
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StateError(
                    f"access denied to {self.url} ({what}): {code}",
                    hint="the state needs s3:GetObject, s3:PutObject, s3:DeleteObject and "
                    "s3:ListBucket on the bucket and prefix",
                )
            return StateError(f"S3 refused {what} at {self.url}: {code or exc}")
        return StateError(
            f"cannot reach S3 for {what} at {self.url}: {exc}",
            hint="check network access and AWS credentials (AWS_PROFILE, AWS_REGION)",
        )

    def get(self, name: str) -> Blob | None:
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=self._key(name))
            return Blob(reply["Body"].read(), str(reply["ETag"]))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._error(exc, f"reading {name}") from exc
        except BotoCoreError as exc:
            raise self._error(exc, f"reading {name}") from exc

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
        except ClientError as exc:
            code = _code(exc)
            if code in _LOST_RACE or (if_version is not None and code in _MISSING):
                raise PreconditionFailed(f"{name} changed at {self.url}") from exc
            raise self._error(exc, f"writing {name}") from exc
        except BotoCoreError as exc:
            raise self._error(exc, f"writing {name}") from exc

    def delete(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (ClientError, BotoCoreError) as exc:
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
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"listing {prefix}") from exc
        return names
