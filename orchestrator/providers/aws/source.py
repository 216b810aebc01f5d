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
from typing import TYPE_CHECKING, Any

from orchestrator.adaptors.aws import call, is_sdk_error, map_aws_error, pages
from orchestrator.fleet.artifacts import S3
from orchestrator.providers.aws.s3 import parse_s3_uri
from orchestrator.providers.aws.session import AwsClients
from orchestrator.providers.sources import BucketSource
from orchestrator.providers.transfer import Checksum, Readable, SourceObject

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

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


class S3Source(BucketSource):
    kind = S3

    def __init__(self, uri: str, options: Mapping[str, str], fleet_dir: Path) -> None:
        del fleet_dir
        super().__init__(uri, *parse_s3_uri(uri.split("#", 1)[0]))
        self._clients = AwsClients(options)
        self._region = options.get(SOURCE_REGION_OPTION, "us-east-1")

    def _s3(self) -> S3Client:
        return self._clients.s3(self._region)

    def listing(self) -> dict[str, tuple[int | None, Checksum | None]] | None:
        found = pages(
            self._where,
            "s3:ListBucket",
            self._s3(),
            "list_objects_v2",
            Bucket=self.bucket,
            Prefix=self.prefix,
        )
        if found is None:
            return None
        return {
            o["Key"]: (int(o.get("Size", 0)), etag_checksum(o.get("ETag")))
            for page in found
            for o in page.get("Contents", [])
        }

    def open(self, obj: SourceObject) -> tuple[Readable, SourceObject]:
        got = call(
            self._where, "s3:GetObject", self._s3().get_object, Bucket=self.bucket, Key=obj.key
        )
        described = obj._replace(
            size=int(got["ContentLength"]),
            checksum=etag_checksum(got.get("ETag"), got.get("ServerSideEncryption")),
        )
        return _Body(got["Body"], self._where), described
