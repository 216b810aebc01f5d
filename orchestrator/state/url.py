"""``--state`` values: which store a URL names, and opening it.

Valid forms (docs/state.md)::

    (none)                  <fleet>/.sovereign/state.db
    PATH                    that SQLite file (relative to the working directory)
    sqlite:///PATH          the same, explicit (sqlite:////abs/path for an absolute path)
    s3://BUCKET[/PREFIX]    objects under PREFIX in an S3 bucket
    gs://BUCKET[/PREFIX]    objects under PREFIX in a Google Cloud Storage bucket

Anything else is refused with this list rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import StateError, UsageError
from orchestrator.fleet.drain import NO_DRAINS, Drains
from orchestrator.state.lease import DEFAULT_LEASE_SECONDS

if TYPE_CHECKING:
    from orchestrator.state.base import StateStore

DEFAULT_STATE = Path(".sovereign") / "state.db"
VALID_FORMS = (
    "a file path, sqlite:///PATH (sqlite:////abs/path for an absolute one), "
    "s3://BUCKET/PREFIX or gs://BUCKET/PREFIX; omit --state for <fleet>/.sovereign/state.db"
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_ALMOST_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Bucket names: S3 and GCS both allow lowercase letters, digits, '.', '-' and '_' (GCS).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class StateLocation:
    scheme: str  # "sqlite" | "s3" | "gs"
    path: Path | None = None  # sqlite
    bucket: str = ""  # s3, gs
    prefix: str = ""  # s3, gs: no leading or trailing '/'


def _bad(url: str, why: str) -> UsageError:
    return UsageError(f"invalid --state {url!r}: {why}", hint=f"use {VALID_FORMS}")


def parse_state_url(url: str | None, fleet_dir: Path) -> StateLocation:
    """Where the state lives, or ``UsageError`` listing the valid forms."""
    if url is None:
        return StateLocation("sqlite", path=fleet_dir / DEFAULT_STATE)
    if not isinstance(url, str) or not url.strip():
        raise _bad(str(url), "it is empty")
    if url != url.strip():
        raise _bad(url, "it has leading or trailing spaces")
    match = _SCHEME.match(url)
    if match is None:
        if _ALMOST_SCHEME.match(url):
            # "s3:/bucket" or "gs:bucket" is a typo far more often than a file name.
            raise _bad(url, "it looks like a URL with a mistyped scheme (write ./NAME for a file)")
        return StateLocation("sqlite", path=Path(url))
    scheme = match.group(1).lower()
    rest = url[match.end() :]
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise _bad(url, "write sqlite:///PATH (three slashes, then the file path)")
        return StateLocation("sqlite", path=Path(rest[1:]))
    if scheme in ("s3", "gs"):
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise _bad(url, f"{bucket!r} is not a bucket name")
        prefix = prefix.strip("/")
        if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
            raise _bad(url, f"{prefix!r} is not a clean object prefix")
        return StateLocation(scheme, bucket=bucket, prefix=prefix)
    raise _bad(url, f"unknown scheme {scheme}://")


PULUMI_DIR = "pulumi"


def pulumi_backend_url(url: str | None, fleet_dir: Path) -> str:
    """The Pulumi backend that keeps the stacks beside the state ``url`` names: the directory
    ``pulumi/`` next to the SQLite file (``file://``, absolute), or the prefix ``<PREFIX>/pulumi``
    of the same bucket (``s3://``, ``gs://``). The stacks then live, and are backed up and
    access-controlled, wherever the state already is."""
    where = parse_state_url(url, fleet_dir)
    if where.scheme == "sqlite":
        assert where.path is not None
        return (where.path.parent.resolve() / PULUMI_DIR).as_uri()
    prefix = "/".join(p for p in (where.prefix, PULUMI_DIR) if p)
    return f"{where.scheme}://{where.bucket}/{prefix}"


FLEET_SETTINGS = "fleet.yaml"


def pinned_state_lineage(fleet_dir: Path) -> str | None:
    """The ``state_lineage`` that ``fleet.yaml`` pins, or None (no file, or no pin).

    Read on its own (not through the whole fleet), so that every command that opens a state,
    even one that never loads the fleet (``audit``, ``trust show``), checks it. A fleet.yaml
    that cannot be read is an error: the pin cannot be known, so nothing is opened.
    """
    from orchestrator.fleet.yamlsource import parse_yaml

    path = fleet_dir / FLEET_SETTINGS
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    doc, problems = parse_yaml(str(path), raw)
    if doc is None or problems:
        first = problems[0] if problems else None
        raise UsageError(
            f"cannot read state_lineage from {path}: {first or 'not a YAML mapping'}",
            hint="fix fleet.yaml (`sovereign validate` names every problem)",
        )
    value = doc.data.get("state_lineage")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UsageError(
            f"{path}:{doc.line_of('state_lineage')}: state_lineage must be the lineage "
            "`sovereign state init` printed"
        )
    return value.strip()


def open_store(
    url: str | None,
    fleet_dir: Path,
    *,
    create: bool = True,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    check_lineage: bool = True,
) -> StateStore:
    """Open (and by default create) the store that ``url`` names; see the module docstring.

    ``create=False`` is for read-only commands (``audit verify``): a missing store is then a
    ``StateError`` instead of a new, empty one that would hide a deleted log.

    When the fleet's ``fleet.yaml`` pins ``state_lineage`` (docs/gitops.md), the store must
    exist and have that lineage: nothing is created, and a store of another lineage is closed
    and refused (``check_lineage=False`` only for ``state init``).
    """
    pinned = pinned_state_lineage(fleet_dir) if check_lineage else None
    if pinned is None:
        return _open(url, fleet_dir, create=create, lease_seconds=lease_seconds)
    try:
        store = _open(url, fleet_dir, create=False, lease_seconds=lease_seconds)
    except StateError as exc:
        raise StateError(
            f"{fleet_dir / FLEET_SETTINGS} pins state_lineage {pinned}: {exc.message}",
            hint="a pinned fleet is applied only with its own state: restore it from a backup "
            "(or point --state at it); never create a new one behind the pin",
        ) from exc
    try:
        lineage = store.lineage()
    except BaseException:
        store.close()
        raise
    if lineage != pinned:
        store.close()
        raise StateError(
            f"the state at {store.url} has lineage {lineage}, but "
            f"{fleet_dir / FLEET_SETTINGS} pins state_lineage {pinned}",
            hint="this is another state (a wiped and re-created one, or the wrong --state): "
            "restore the pinned state, or change the pin in a reviewed change",
        )
    return store


def _open(url: str | None, fleet_dir: Path, *, create: bool, lease_seconds: float) -> StateStore:
    where = parse_state_url(url, fleet_dir)
    if where.scheme == "sqlite":
        from orchestrator.state.sqlite import SqliteStateStore

        assert where.path is not None
        return SqliteStateStore(where.path, create=create, lease_seconds=lease_seconds)
    # Object storage: the bucket client and its SDK are imported only for the scheme named.
    from orchestrator.state.blobs import Blobs
    from orchestrator.state.objectstore import ObjectStateStore

    blobs: Blobs
    if where.scheme == "s3":
        from orchestrator.state.s3 import S3Blobs

        blobs = S3Blobs(where.bucket, where.prefix)
    else:
        from orchestrator.state.gcs import GcsBlobs

        blobs = GcsBlobs(where.bucket, where.prefix)
    return ObjectStateStore(blobs, create=create, lease_seconds=lease_seconds, backend=where.scheme)


def read_drains(url: str | None, fleet_dir: Path) -> Drains:
    """The drains a reader (``explain``, ``impact``) honours, never creating a store (docs/cli.md):
    without ``--state``, those of the default state when it exists, else none; a store named
    with ``--state`` must exist."""
    if url is None:
        where = parse_state_url(None, fleet_dir)
        if where.path is None or not where.path.exists():
            return NO_DRAINS
    store = open_store(url, fleet_dir, create=False)
    try:
        return store.drains()
    finally:
        store.close()
