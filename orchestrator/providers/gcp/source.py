"""``gs://`` artifact sources, read by any provider that streams them (AWS and local sites).

GCP sites copy ``gs://`` sources server-side (rewrites, ``storage.SiteStore``); everyone else
lists and reads them here, in ranged chunks, with the same clients and error mapping. The
source's endpoint is the one configured for the ``gcs_artifact_region`` option (default: the
plain ``gcs_endpoint_url``, or Google's). The checksum is the object's MD5 (``md5Hash``), or
its CRC32C for composite objects, which have no MD5.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator.adaptors.gcp import call, lookup
from orchestrator.fleet.artifacts import GCS
from orchestrator.providers.gcp.storage import GcsClients
from orchestrator.providers.sources import BucketSource
from orchestrator.providers.transfer import CHUNK, Checksum, Readable, SourceObject

SOURCE_REGION_OPTION = "gcs_artifact_region"


def blob_checksum(blob: Any) -> Checksum | None:
    if getattr(blob, "md5_hash", None):
        return Checksum.from_b64("md5", blob.md5_hash)
    if getattr(blob, "crc32c", None):
        return Checksum.from_b64("crc32c", blob.crc32c)
    return None


class _Reader:
    """A ``BlobReader`` whose failures are provider errors."""

    def __init__(self, reader: Any, where: str) -> None:
        self._reader = reader
        self._where = where

    def read(self, size: int = -1, /) -> bytes:
        data: bytes = call(self._where, "storage.objects.get", self._reader.read, size)
        return data

    def close(self) -> None:
        self._reader.close()


class GcsSource(BucketSource):
    kind = GCS

    def __init__(self, uri: str, options: Mapping[str, str], fleet_dir: Path) -> None:
        del fleet_dir
        parts = urlsplit(uri.split("#", 1)[0])
        super().__init__(uri, parts.netloc, parts.path.lstrip("/"))
        self._clients = GcsClients(options)
        self._region = options.get(SOURCE_REGION_OPTION, "")

    def _client(self) -> Any:
        # Creating a client looks for credentials: a failure there is a provider error too.
        return call(self._where, "storage.objects.get", self._clients.client, self._region)

    def listing(self) -> dict[str, tuple[int | None, Checksum | None]] | None:
        client = self._client()

        def listing() -> dict[str, tuple[int | None, Checksum | None]]:
            return {
                b.name: (int(b.size) if b.size is not None else None, blob_checksum(b))
                for b in client.list_blobs(
                    self.bucket, prefix=self.prefix, retry=self._clients.retry()
                )
            }

        found: dict[str, tuple[int | None, Checksum | None]] | None = lookup(
            self._where, "storage.objects.list", listing
        )
        return found

    def open(self, obj: SourceObject) -> tuple[Readable, SourceObject]:
        blob = self._client().bucket(self.bucket).blob(obj.key)
        call(self._where, "storage.objects.get", blob.reload, retry=self._clients.retry())
        reader = call(self._where, "storage.objects.get", blob.open, "rb", chunk_size=CHUNK)
        described = obj._replace(
            size=int(blob.size) if blob.size is not None else None, checksum=blob_checksum(blob)
        )
        return _Reader(reader, self._where), described
