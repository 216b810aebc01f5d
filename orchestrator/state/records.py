"""Checks every state backend applies to what it records and reads back, written once.

A recorded change and an applied fleet are validated the same way whether they go to SQLite or
to a bucket, and an applied fleet read back is accepted only if its files still hash to the
digest recorded with them (``fleet.digest.fleet_digest``, the very value ``Fleet.digest`` and
plans carry). Stores written before that digest was unified recorded
``sha256(canonical JSON of [[path, sha256], ...])``; such a record is still verified, by that
rule, so an existing state keeps working, and it is reported under the one digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import AuditError, StateError
from orchestrator.fleet.digest import fleet_digest
from orchestrator.fleet.drain import Drain, Drains
from orchestrator.state.audit import canonical_json
from orchestrator.state.base import AppliedDirective, AppliedFleet


def check_fleet_files(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """Fleet-relative paths to bytes, or ``StateError`` naming the bad entry."""
    out: dict[str, bytes] = {}
    for path, data in files.items():
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            raise StateError(f"applied fleet file name {path!r} is not a fleet-relative path")
        if not isinstance(data, bytes | bytearray):
            raise StateError(f"applied fleet file {path!r} must be bytes")
        out[path] = bytes(data)
    return out


def check_change(address: str, op: str, outcome: str, resource: dict[str, Any] | None) -> str:
    """Validate one recorded change; return the resource's canonical JSON ('' for None)."""
    for name, value in (("address", address), ("op", op), ("outcome", outcome)):
        if not isinstance(value, str) or not value:
            raise StateError(f"record_change: {name} must be a non-empty string, got {value!r}")
    if resource is None:
        return ""
    if not isinstance(resource, dict):
        raise StateError(f"record_change: resource must be a dict or None, got {type(resource)}")
    try:
        return canonical_json(resource)
    except AuditError as exc:
        raise StateError(f"record_change: resource for {address} is not JSON: {exc}") from exc


def _legacy_digest(files: Mapping[str, bytes]) -> str:
    listing = [[path, hashlib.sha256(data).hexdigest()] for path, data in sorted(files.items())]
    return hashlib.sha256(canonical_json(listing).encode("utf-8")).hexdigest()


def verified_applied_fleet(
    serial: int, files: Mapping[str, bytes], recorded_digest: str
) -> AppliedFleet:
    """The applied fleet read back, if its files match the digest recorded with them."""
    digest = fleet_digest(files)
    if recorded_digest not in (digest, _legacy_digest(files)):
        raise StateError(
            f"the applied fleet recorded at serial {serial} does not match its digest",
            hint="the state was altered; re-apply the fleet to record it again",
        )
    return AppliedFleet(serial=serial, files=files, digest=digest)


def drains_from_text(text: str | bytes | None, version: str) -> Drains:
    """Drains from their stored JSON list; a damaged record is a ``StateError``."""
    if text is None:
        return Drains((), version)
    try:
        raw = json.loads(text)
        if not isinstance(raw, list):
            raise ValueError("not a list")
        return Drains(tuple(Drain.from_json(d) for d in raw), version)
    except (ValueError, TypeError, AttributeError) as exc:
        raise StateError(
            f"the drains recorded in the state are damaged: {exc}",
            hint="restore the state from a backup, or record the drains again with "
            "`sovereign drain` after `sovereign restore`",
        ) from exc


def drains_moved_error(url: str) -> StateError:
    """A drain or restore computed its effect from drains that changed since (docs/runbooks.md)."""
    return StateError(
        f"the drains in {url} changed while this command ran (another drain or restore)",
        hint="nothing was recorded; run the command again to see its effect on the new drains",
    )


def applied_directive_from_text(text: str | bytes | Mapping[str, Any]) -> AppliedDirective:
    """An applied directive record from its stored JSON; a damaged one is a ``StateError``."""
    if isinstance(text, Mapping):
        return AppliedDirective.from_json(text)
    try:
        raw = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise StateError(
            f"an applied directive record is not JSON: {exc}",
            hint="the state was altered; restore it from a backup",
        ) from exc
    if not isinstance(raw, dict):
        raise StateError(
            "an applied directive record is not a JSON object",
            hint="the state was altered; restore it from a backup",
        )
    return AppliedDirective.from_json(raw)


def unreadable_store(where: object, why: str) -> StateError:
    """A store that exists but cannot be read (empty, truncated, not a store): writers never
    create over it (docs/state.md, the state as an anchor)."""
    return StateError(
        f"the state at {where} exists but cannot be read ({why}); it is not re-created",
        hint="restore it from a backup (its applied directives and pinned authority sets are "
        "what protects the law); if it truly never held anything, remove it and run "
        "`sovereign state init`",
    )
