"""Where weights come from: one reader per kind of artifact source, found through a registry.

Every provider places weights from every kind of source (docs/fleet-format.md). A provider copies
server-side when a source is in its own cloud; otherwise it opens the source here and streams it
through ``providers.transfer``. ``s3://`` and ``gs://`` readers live beside their cloud's provider
(the SDK stays inside its package and is imported on first use); ``https://`` and ``file://``/path
readers are here, as they need no cloud SDK.

With several mirrors, a site takes the first mirror in its own cloud, else the first it can
read (``choose_mirror``).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from orchestrator.errors import PermanentProviderError, ProviderError, TransientProviderError
from orchestrator.fleet.artifacts import FILE, GCS, HTTPS, S3, source_kind
from orchestrator.providers.transfer import (
    CHUNK,
    Checksum,
    IterReader,
    Readable,
    SourceObject,
    SourceReader,
)

CA_BUNDLE_OPTION = "https_ca_bundle"  # a PEM bundle for https sources behind a private CA
HTTPS_TIMEOUT_OPTION = "https_timeout"

_REGISTRY: dict[str, str] = {
    S3: "orchestrator.providers.aws.source:S3Source",
    GCS: "orchestrator.providers.gcp.source:GcsSource",
    HTTPS: "orchestrator.providers.sources:HttpsSource",
    FILE: "orchestrator.providers.sources:FileSource",
}

SourceFactory = Callable[[str, Mapping[str, str], Path], SourceReader]


def open_source(uri: str, options: Mapping[str, str], fleet_dir: Path) -> SourceReader:
    """The reader of ``uri``; an unknown kind is a permanent error naming the valid ones."""
    kind = source_kind(uri)
    if kind is None:
        raise PermanentProviderError(
            f"artifact source {uri!r} is not an s3://, gs://, https:// or file:// URL or a path",
            hint="fix the model's artifact in models.yaml (`sovereign validate` checks it)",
        )
    module_name, _, attr = _REGISTRY[kind].partition(":")
    factory: SourceFactory = getattr(importlib.import_module(module_name), attr)
    return factory(uri, options, fleet_dir)


def choose_mirror(
    mirrors: Sequence[str],
    own_kind: str,
    readable: Callable[[str], ProviderError | None],
) -> str:
    """The first mirror in the site's own cloud (``own_kind``), else the first readable one.

    ``readable(uri)`` probes a mirror and returns the error that makes it unreadable, or None.
    Own-cloud mirrors are probed first, in order, then the others in order.
    """
    ordered = [m for m in mirrors if source_kind(m) == own_kind] + [
        m for m in mirrors if source_kind(m) != own_kind
    ]
    if len(ordered) == 1:
        return ordered[0]
    failures: list[str] = []
    for mirror in ordered:
        error = readable(mirror)
        if error is None:
            return mirror
        failures.append(f"{mirror}: {error.message}")
    raise PermanentProviderError(
        "no mirror of the artifact can be read: " + "; ".join(failures),
        hint="check the mirrors' URLs and the credentials' read permissions",
    )


def probe(uri: str, options: Mapping[str, str], fleet_dir: Path) -> ProviderError | None:
    """None when ``uri`` lists at least one object, else the error that says why not."""
    try:
        open_source(uri, options, fleet_dir).objects()
    except ProviderError as exc:
        return exc
    return None


def selected_keys(prefix: str, keys: Sequence[str]) -> list[str]:
    """``x://b/dir`` means the object ``dir`` or the objects under ``dir/``, never
    ``dir-old/...``; folder markers (keys ending in /) are skipped."""
    return sorted(
        k
        for k in keys
        if not k.endswith("/")
        and (prefix.endswith("/") or not prefix or k == prefix or k.startswith(prefix + "/"))
    )


def relative_name(prefix: str, key: str) -> str:
    return key[len(prefix) :].lstrip("/") or posixpath.basename(key)


class BucketSource:
    """The template of an object-store source (``s3://``, ``gs://``): a bucket and a prefix.

    The rules every cloud shares live here: which keys of a listing are the model's
    (``selected_keys``), the name each takes at the target, and the errors for a missing
    bucket or an empty prefix. A cloud's source (``providers/aws/source.py``,
    ``providers/gcp/source.py``) supplies only its listing and its reader.
    """

    kind: str

    def __init__(self, uri: str, bucket: str, prefix: str) -> None:
        self.uri = uri
        self.bucket, self.prefix = bucket, prefix
        self._where = f"source {uri}"

    def listing(self) -> Mapping[str, tuple[int | None, Checksum | None]] | None:
        """Every object under the prefix: key -> (size, checksum); None: no such bucket."""
        raise NotImplementedError

    def open(self, obj: SourceObject) -> tuple[Readable, SourceObject]:
        raise NotImplementedError

    def objects(self) -> list[SourceObject]:
        found = self.listing()
        if found is None:
            raise PermanentProviderError(f"artifact source bucket does not exist: {self.uri}")
        keys = selected_keys(self.prefix, list(found))
        if not keys:
            raise PermanentProviderError(
                f"artifact source holds no objects: {self.uri}",
                hint="check the model's artifact URI in models.yaml",
            )
        return [SourceObject(key, relative_name(self.prefix, key), *found[key]) for key in keys]


def pinned_sha256(uri: str) -> Checksum | None:
    """A ``#sha256=HEX`` fragment pins the digest of a single-object source."""
    fragment = urlsplit(uri).fragment
    if fragment.startswith("sha256="):
        return Checksum.from_hex("sha256", fragment[len("sha256=") :])
    return None


# -- https ------------------------------------------------------------------------------------


def _digest_header(headers: Mapping[str, str]) -> Checksum | None:
    """The strongest digest an https answer publishes (RFC 9530 Repr-Digest, RFC 3230 Digest,
    Content-MD5, GCS's x-goog-hash)."""
    candidates: list[tuple[str, str]] = []
    for header in ("repr-digest", "digest", "x-goog-hash"):
        for part in headers.get(header, "").split(","):
            name, _, value = part.strip().partition("=")
            if value:
                candidates.append((name.strip().lower(), value.strip()))
    if headers.get("content-md5"):
        candidates.append(("md5", headers["content-md5"]))
    by_name = {n.replace("-", ""): v for n, v in candidates}
    for name, algorithm in (("sha256", "sha256"), ("sha512", "sha512"), ("md5", "md5")):
        if name in by_name:
            return Checksum.from_b64(algorithm, by_name[name])
    return None


class HttpsSource:
    """One object at an https URL (an https source names a single file, e.g. a tarball or a
    safetensors shard). Size from Content-Length, checksum from a pinned ``#sha256=`` or the
    answer's digest headers."""

    kind = HTTPS

    def __init__(self, uri: str, options: Mapping[str, str], fleet_dir: Path) -> None:
        del fleet_dir
        self.uri = uri
        self._url = uri.split("#", 1)[0]
        self._ca_bundle = options.get(CA_BUNDLE_OPTION)
        self._timeout = float(options.get(HTTPS_TIMEOUT_OPTION, "30"))
        self._name = posixpath.basename(unquote(urlsplit(self._url).path)) or "weights"

    def _client(self) -> Any:
        import ssl

        import httpx

        verify: Any = True
        if self._ca_bundle:
            try:
                verify = ssl.create_default_context(cafile=self._ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise PermanentProviderError(
                    f"{self.uri}: cannot load the CA bundle {self._ca_bundle}: {exc}",
                    hint="point https_ca_bundle (SOVEREIGN_HTTPS_CA_BUNDLE) at a PEM file",
                ) from exc
        return httpx.Client(verify=verify, timeout=self._timeout, follow_redirects=True)

    def _error(self, exc: Exception) -> ProviderError:
        import httpx

        if isinstance(exc, httpx.HTTPStatusError):
            status = exc.response.status_code
            if status in (408, 429) or status >= 500:
                return TransientProviderError(f"{self.uri}: HTTP {status}")
            return PermanentProviderError(
                f"{self.uri}: HTTP {status}",
                hint="check the URL and that it is readable without credentials",
            )
        if isinstance(exc, httpx.TransportError):
            return TransientProviderError(f"{self.uri}: cannot reach the server ({exc})")
        return PermanentProviderError(f"{self.uri}: {type(exc).__name__}: {exc}")

    def _describe(self, headers: Mapping[str, str]) -> SourceObject:
        length = headers.get("content-length")
        size = int(length) if length and length.isdigit() else None
        checksum = pinned_sha256(self.uri) or _digest_header(headers)
        return SourceObject(self._url, self._name, size, checksum)

    def objects(self) -> list[SourceObject]:
        import httpx

        try:
            with self._client() as client:
                answer = client.head(self._url)
                answer.raise_for_status()
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in (403, 405, 501):
                raise self._error(exc) from exc
            # Some servers answer only GET (pre-signed URLs, minimal servers): ask with a GET
            # and read nothing but its headers.
            stream, described = self.open(
                SourceObject(self._url, self._name, None, pinned_sha256(self.uri))
            )
            stream.close()
            return [described]
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc
        return [self._describe({k.lower(): v for k, v in answer.headers.items()})]

    def open(self, obj: SourceObject) -> tuple[Readable, SourceObject]:
        import httpx

        client = self._client()
        try:
            request = client.build_request("GET", obj.key, headers={"Accept-Encoding": "identity"})
            answer = client.send(request, stream=True)
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            client.close()
            raise self._error(exc) from exc

        def close() -> None:
            answer.close()
            client.close()

        def chunks() -> Any:
            try:
                yield from answer.iter_raw(CHUNK)
            except httpx.HTTPError as exc:
                raise self._error(exc) from exc

        described = self._describe({k.lower(): v for k, v in answer.headers.items()})
        return IterReader(chunks(), close), described


# -- file:// and paths ------------------------------------------------------------------------


def local_path(uri: str, fleet_dir: Path) -> Path:
    """``file:///ABS``, ``file://./REL`` (relative to the fleet dir), or a plain path."""
    parsed = urlsplit(uri)
    if parsed.scheme == "file":
        if parsed.netloc in ("", "localhost"):
            return Path(unquote(parsed.path))
        if parsed.netloc in (".", ".."):
            return fleet_dir / (parsed.netloc + unquote(parsed.path))
        raise PermanentProviderError(
            f"{uri}: file URLs on another host ({parsed.netloc}) are not local",
            hint="use file:///ABSOLUTE/PATH or file://./PATH (relative to the fleet directory)",
        )
    path = Path(uri.split("#", 1)[0])
    return path if path.is_absolute() else fleet_dir / path


class FileSource:
    """A file or a directory tree on the host running Sovereign."""

    kind = FILE

    def __init__(self, uri: str, options: Mapping[str, str], fleet_dir: Path) -> None:
        del options
        self.uri = uri
        self.path = local_path(uri, fleet_dir)

    def objects(self) -> list[SourceObject]:
        if self.path.is_file():
            return [
                SourceObject(
                    str(self.path),
                    self.path.name,
                    self.path.stat().st_size,
                    pinned_sha256(self.uri),
                )
            ]
        if self.path.is_dir():
            found = [
                SourceObject(str(p), p.relative_to(self.path).as_posix(), p.stat().st_size, None)
                for p in sorted(self.path.rglob("*"))
                if p.is_file()
            ]
            if found:
                return found
        raise PermanentProviderError(
            f"artifact source not found: {self.uri} (resolved to {self.path})",
            hint="use a file:// URL or a path (relative paths are resolved against the fleet "
            "directory)",
        )

    def open(self, obj: SourceObject) -> tuple[Readable, SourceObject]:
        try:
            handle = Path(obj.key).open("rb")
        except OSError as exc:
            raise PermanentProviderError(f"cannot read {obj.key}: {exc.strerror}") from exc
        return handle, obj._replace(size=os.fstat(handle.fileno()).st_size)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
