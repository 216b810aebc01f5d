"""The blob interface object-storage state is built on: five calls and a lost-race error.

A bucket offers no transactions, only compare-and-swap on one object (create if absent,
replace if unchanged). ``Blobs`` names exactly that, so the state machinery
(``state.objectstore``) is written once and each cloud (``state.s3``, ``state.gcs``) implements
only these calls, knowing nothing of the store built on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.errors import StateError
from orchestrator.state.audit import canonical_json

CAS_ATTEMPTS = 20  # compare-and-swap retries before contention is reported


class PreconditionFailed(StateError):
    """A conditional write lost: the object changed (or appeared) since it was read."""


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    version: str  # S3 ETag, GCS generation


class Blobs(Protocol):
    """The calls a bucket must offer; names are relative to the store's prefix."""

    url: str

    def get(self, name: str) -> Blob | None:
        """The object and its version, or None when absent."""
        ...

    def put(
        self, name: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        """Write; with ``if_version``/``if_absent`` only if that still holds, else raise
        ``PreconditionFailed``. Returns the new version."""
        ...

    def version(self, name: str) -> str | None:
        """The object's version without its data (a HEAD / metadata read), None when absent:
        the cheap question a gateway asks often to learn that the state moved."""
        ...

    def delete(self, name: str) -> None: ...

    def list(self, prefix: str) -> list[str]:
        """Names (relative to the store prefix) that start with ``prefix``."""
        ...


def read_json(blob: Blob, name: str) -> dict[str, Any]:
    try:
        value = json.loads(blob.data)
    except ValueError as exc:
        raise StateError(f"{name} in the state store is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise StateError(f"{name} in the state store is not a JSON object")
    return value


def dump_json(value: Mapping[str, Any]) -> bytes:
    return canonical_json(value).encode("utf-8")
