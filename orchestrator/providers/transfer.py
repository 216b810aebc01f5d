"""Streamed artifact copies: bounded memory, verified against the source before they count.

When a site's weights come from outside its own cloud (docs/fleet-format.md), the provider streams
them: the source is read in chunks through ``VerifyingStream``, which counts and hashes every byte
and, at the moment the last byte the source declared is read (or the stream ends early, or
runs long), compares size and checksum with what the source published. On a mismatch it raises
``ArtifactIntegrityError`` *before* handing out those last bytes, so the target's upload (an S3
multipart upload, a GCS resumable or single-request upload, a file in a staging directory) is
aborted and no object appears; providers also delete anything left at the key, to be sure.

Checksums come from the source: an S3 ETag that is an MD5 (single-part uploads) or an S3
additional checksum, GCS ``md5Hash`` (or ``crc32c`` for composite objects), an https
``Repr-Digest``/``Digest``/``Content-MD5`` header, or a ``#sha256=HEX`` pinned in the URL. A
source that publishes none is checked on size only and the manifest says so.

Progress of large copies is logged on the ``orchestrator.transfer`` logger (the CLI shows it on
stderr), so an operator sees a 100 GB copy advance.

Note on sovereignty: a streamed copy passes through the host running Sovereign (docs/providers.md).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

from orchestrator.errors import PermanentProviderError

CHUNK = 8 * 1024 * 1024  # read and part size: memory use is a small multiple of this
PROGRESS_MIN_BYTES = 64 * 1024 * 1024  # objects at least this large report progress
PROGRESS_EVERY_SECONDS = 5.0

log = logging.getLogger("orchestrator.transfer")


class ArtifactIntegrityError(PermanentProviderError):
    """A streamed copy did not match its source's size or checksum; nothing was kept."""


class Checksum(NamedTuple):
    """A digest the source publishes: ``algorithm`` (md5, sha1, sha256, crc32c) and raw bytes."""

    algorithm: str
    digest: bytes

    @classmethod
    def from_hex(cls, algorithm: str, value: str) -> Checksum | None:
        try:
            return cls(algorithm, bytes.fromhex(value.strip().strip('"')))
        except ValueError:
            return None

    @classmethod
    def from_b64(cls, algorithm: str, value: str) -> Checksum | None:
        try:
            return cls(algorithm, base64.b64decode(value.strip().strip(":"), validate=True))
        except ValueError:
            return None

    def render(self) -> str:
        return f"{self.algorithm}:{self.digest.hex()}"


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32c:
    def __init__(self) -> None:
        # google-crc32c comes with google-cloud-storage; it has no type hints.
        module: Any = importlib.import_module("google_crc32c")
        self._c: Any = module.Checksum()

    def update(self, data: bytes, /) -> None:
        self._c.update(data)

    def digest(self) -> bytes:
        value: bytes = self._c.digest()
        return value


def _hasher(algorithm: str) -> _Hasher:
    if algorithm == "crc32c":
        return _Crc32c()
    return hashlib.new(algorithm)


class SourceObject(NamedTuple):
    """One object of a source: where to read it, its name under the model's prefix at the
    target, and what the source says about it (None: not published)."""

    key: str
    name: str
    size: int | None
    checksum: Checksum | None


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class SourceReader(Protocol):
    """A source of weights: list its objects, open one for a streamed read."""

    uri: str
    kind: str  # s3 | gs | https | file

    def objects(self) -> list[SourceObject]:
        """Every object of the source (a prefix's objects, or the one object a URL names);
        a ``PermanentProviderError`` when there is none or the source cannot be read."""
        ...

    def open(self, obj: SourceObject) -> tuple[Readable, SourceObject]:
        """A stream of the object, and the object as the read describes it (size and
        checksum may only be known once the read starts, e.g. for https)."""
        ...


class IterReader:
    """``read(n)`` over an iterator of byte chunks (an httpx streaming response)."""

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._close = close

    def read(self, size: int = -1, /) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def close(self) -> None:
        self._close()


class VerifyingStream:
    """A file-like ``read`` that verifies the source's size and checksum at its last byte.

    Also keeps a SHA-256 of everything read, recorded in the target's manifest.
    """

    def __init__(self, source: Readable, obj: SourceObject, *, what: str) -> None:
        self._source = source
        self._obj = obj
        self._what = what
        self._read = 0
        self._sha256 = hashlib.sha256()
        self._check = _hasher(obj.checksum.algorithm) if obj.checksum is not None else None
        self._verified = False
        self._started = time.monotonic()
        self._last_report = self._started

    @property
    def bytes_read(self) -> int:
        return self._read

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def _fail(self, why: str) -> ArtifactIntegrityError:
        return ArtifactIntegrityError(
            f"{self._what}: the copy does not match its source ({why}); nothing was kept",
            hint="the source changed during the copy, or its published checksum is wrong; "
            "check the weights at the source and re-run apply",
        )

    def _verify(self) -> None:
        expected = self._obj.size
        if expected is not None and self._read != expected:
            raise self._fail(f"read {self._read} bytes, the source declares {expected}")
        if self._obj.checksum is not None and self._check is not None:
            got = self._check.digest()
            if got != self._obj.checksum.digest:
                raise self._fail(
                    f"{self._obj.checksum.algorithm} {got.hex()}, the source publishes "
                    f"{self._obj.checksum.digest.hex()}"
                )
        self._verified = True

    def read(self, size: int = -1, /) -> bytes:
        if self._verified:
            return b""
        data = self._source.read(size if size is not None else -1)
        expected = self._obj.size
        if data:
            self._read += len(data)
            self._sha256.update(data)
            if self._check is not None:
                self._check.update(data)
            self._report()
        if expected is not None and self._read > expected:
            raise self._fail(f"more than the {expected} bytes the source declares")
        if not data or (expected is not None and self._read == expected):
            # The last byte: verify before the caller sees it, so a mismatch is never stored.
            self._verify()
        return data

    def _report(self) -> None:
        total = self._obj.size
        if total is None or total < PROGRESS_MIN_BYTES:
            return
        now = time.monotonic()
        if now - self._last_report < PROGRESS_EVERY_SECONDS and self._read < total:
            return
        self._last_report = now
        rate = self._read / max(now - self._started, 1e-6)
        log.info(
            "%s: %d of %d MiB (%d%%, %.0f MiB/s)",
            self._what,
            self._read >> 20,
            total >> 20,
            100 * self._read // total,
            rate / (1 << 20),
        )

    def finish(self) -> None:
        """Make sure the whole object was read and verified (a target may stop reading at the
        declared size without asking for more)."""
        if not self._verified:
            if self._source.read(1):
                raise self._fail(f"more than the {self._obj.size} bytes the source declares")
            self._verify()

    def close(self) -> None:
        self._source.close()


def describe(obj: SourceObject) -> str:
    """What the manifest records about how an object was checked."""
    return obj.checksum.render() if obj.checksum is not None else "size-only"
