"""``s3://`` artifact sources, read by any provider that streams them (GCP and local sites).

AWS sites copy ``s3://`` sources server-side (``s3.ArtifactBuckets``); everyone else lists and
reads them here through the same lazily created clients, with the same error mapping (the IAM
action named on every failure). The source bucket's region is the ``aws_artifact_region``
option (default us-east-1; S3 redirects a client to the bucket's real region).
The checksum is the ETag when it is an MD5 (a single-part upload without SSE-KMS); otherwise
the copy is checked on size, as ``providers.transfer`` documents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.adaptors.aws import call, is_sdk_error, map_aws_error, pages
from orchestrator.errors import PermanentProviderError
from orchestrator.fleet.artifacts import S3
from orchestrator.providers.aws.s3 import parse_s3_uri
from orchestrator.providers.aws.session import AwsClients
from orchestrator.providers.sources import relative_name, selected_keys
from orchestrator.providers.transfer import Checksum, Readable, SourceObject

SOURCE_REGION_OPTION = "aws_artifact_region"
_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


def etag_checksum(etag: str | None, encryption: str | None = None) -> Checksum | None:
    """The MD5 an ETag is, when it is one (not multipart ``-N``, not SSE-KMS/SSE-C)."""
    if not etag or (encryption and encryption != "AES256"):
        return None
    found = _MD5_ETAG.match(etag)
    return Checksum.from_hex("md5", found.group(1)) if found else None


class _Body:
    """A botocore streaming body whose failures are provider errors."""

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def read(self, size: int = -1, /) -> bytes:
        try:
            data: bytes = self._body.read(None if size < 0 else size)
        except Exception as exc:
            if is_sdk_error(exc):
                raise map_aws_error(exc, action="s3:GetObject", site=self._where) from exc
            raise
        return data

    def close(self) -> None:
        self._body.close()


class S3Source:
    kind = S3

    def __init__(self, uri: str, options: Mapping[str, str], fleet_dir: Path) -> None:
        del fleet_dir
        self.uri = uri
        self.bucket, self.prefix = parse_s3_uri(uri.split("#", 1)[0])
        self._clients = AwsClients(options)
        self._region = options.get(SOURCE_REGION_OPTION, "us-east-1")
        self._where = f"source {uri}"

    def _s3(self) -> Any:
        return self._clients.client("s3", self._region)

    def objects(self) -> list[SourceObject]:
        found = pages(
            self._where,
            "s3:ListBucket",
            self._s3(),
            "list_objects_v2",
            Bucket=self.bucket,
            Prefix=self.prefix,
        )
        if found is None:
            raise PermanentProviderError(f"artifact source bucket does not exist: {self.uri}")
        listed = {o["Key"]: o for page in found for o in page.get("Contents", [])}
        keys = selected_keys(self.prefix, list(listed))
        if not keys:
            raise PermanentProviderError(
                f"artifact source holds no objects: {self.uri}",
                hint="check the model's artifact URI in models.yaml",
            )
        return [
            SourceObject(
                key,
                relative_name(self.prefix, key),
                int(listed[key].get("Size", 0)),
                etag_checksum(listed[key].get("ETag")),
            )
            for key in keys
        ]

    def open(self, obj: SourceObject) -> tuple[Readable, SourceObject]:
        got = call(
            self._where, "s3:GetObject", self._s3().get_object, Bucket=self.bucket, Key=obj.key
        )
        described = obj._replace(
            size=int(got["ContentLength"]),
            checksum=etag_checksum(got.get("ETag"), got.get("ServerSideEncryption")),
        )
        return _Body(got["Body"], self._where), described
