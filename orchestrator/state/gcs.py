"""The GCS side of object-storage state: :class:`~orchestrator.state.blobs.Blobs` on GCS.

GCS gives compare-and-swap on single objects through generation preconditions:
``if_generation_match=0`` creates only if absent, ``if_generation_match=N`` replaces only
generation N; a lost race answers 412. Reads fetch the generation first and then download that
exact generation, so data and version always belong together. The client and the meaning of
Google's errors come from the GCP adaptor (``orchestrator.adaptors.gcp``, which imports the
library only when a ``gs://`` store is opened); here they become ``StateError``s. The client
honours ``STORAGE_EMULATOR_HOST`` (emulators, tests) and Application Default Credentials.
"""

from __future__ import annotations

from typing import Any

from orchestrator.adaptors import gcp
from orchestrator.errors import ProviderError, StateError
from orchestrator.state.blobs import Blob, PreconditionFailed

_RETRIES = 5


class GcsBlobs:
    """Objects under ``gs://BUCKET/PREFIX``."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        try:
            self._client = client or gcp.storage_client()
        except ProviderError as exc:
            raise StateError(
                f"cannot create a GCS client for {self.url}: {exc.message}", hint=exc.hint
            ) from exc
        self._bucket = self._client.bucket(bucket)
        self.bucket = bucket

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, exc: Exception, what: str) -> StateError:
        kind = gcp.classify(exc)
        if kind is gcp.Failure.NOT_FOUND:
            return StateError(
                f"the bucket of {self.url} does not exist ({what})",
                hint=f"create it first (gcloud storage buckets create gs://{self.bucket})",
            )
        if kind in (gcp.Failure.DENIED, gcp.Failure.CREDENTIALS):
            return StateError(
                f"access denied to {self.url} ({what}): {exc}",
                hint="the state needs storage.objects.get/create/delete/list on the bucket",
            )
        return StateError(f"GCS failed {what} at {self.url}: {exc}")

    def get(self, name: str) -> Blob | None:
        for _ in range(_RETRIES):
            try:
                blob = self._bucket.get_blob(self._key(name))
                if blob is None:
                    return None
                generation = int(blob.generation)
                data = blob.download_as_bytes(if_generation_match=generation)
                return Blob(bytes(data), str(generation))
            except Exception as exc:
                if not gcp.is_sdk_error(exc):
                    raise
                kind = gcp.classify(exc)
                if kind is gcp.Failure.LOST_RACE:
                    continue  # replaced between the two requests: read the new one
                if kind is gcp.Failure.NOT_FOUND:
                    return None  # deleted between the two requests
                raise self._error(exc, f"reading {name}") from exc
        raise StateError(f"{name} at {self.url} keeps changing while it is read")

    def version(self, name: str) -> str | None:
        try:
            blob = self._bucket.get_blob(self._key(name))  # metadata only, not the data
        except Exception as exc:
            if not gcp.is_sdk_error(exc):
                raise
            raise self._error(exc, f"reading the version of {name}") from exc
        return None if blob is None else str(int(blob.generation))

    def put(
        self, name: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        match: int | None = None
        if if_absent:
            match = 0
        if if_version is not None:
            match = int(if_version)
        blob = self._bucket.blob(self._key(name))
        try:
            blob.upload_from_string(
                data, content_type="application/json", if_generation_match=match
            )
        except Exception as exc:
            if not gcp.is_sdk_error(exc):
                raise
            if gcp.classify(exc) is gcp.Failure.LOST_RACE:
                raise PreconditionFailed(f"{name} changed at {self.url}") from exc
            raise self._error(exc, f"writing {name}") from exc
        return str(blob.generation)

    def delete(self, name: str) -> None:
        try:
            self._bucket.blob(self._key(name)).delete()
        except Exception as exc:
            if not gcp.is_sdk_error(exc):
                raise
            if gcp.classify(exc) is gcp.Failure.NOT_FOUND:
                return
            raise self._error(exc, f"deleting {name}") from exc

    def list(self, prefix: str) -> list[str]:
        start = len(self._key(""))
        try:
            return [
                str(b.name)[start:]
                for b in self._client.list_blobs(self._bucket, prefix=self._key(prefix))
            ]
        except Exception as exc:
            if not gcp.is_sdk_error(exc):
                raise
            raise self._error(exc, f"listing {prefix}") from exc
