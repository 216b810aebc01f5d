"""API keys of attested tenants, as the state keeps them: the key's SHA-256, never the key.

``sovereign key create`` makes a key (``sk-sov-`` + 256 random bits from ``secrets``), prints
it once and records an ``ApiKey``: its id (what ``key list`` shows and ``key revoke`` takes), the
SHA-256 of the key, the tenant, a name, who created it and when, when it expires, whether and by
whom it was revoked. The gateway resolves a presented key by its hash (docs/identity.md).

Like the drains, the records are one versioned document (SQLite ``meta``, one CAS'd object on
S3/GCS) written without the apply lease: creating or revoking a key never waits behind an
apply, and the version lets a writer replace the records only if nobody changed them since it
read them.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from orchestrator.errors import StateError
from orchestrator.fleet.instants import format_utc

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "ApiKeys",
    "api_keys_from_text",
    "api_keys_moved_error",
    "key_digest",
    "new_key",
]

KEY_PREFIX = "sk-sov-"
_ID_RE = re.compile(r"^key_[0-9a-f]{16}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def key_digest(key: str | bytes) -> bytes:
    """The SHA-256 of a key's exact bytes (what the state keeps and the gateway looks up)."""
    return hashlib.sha256(key if isinstance(key, bytes) else key.encode("ascii")).digest()


def new_key() -> tuple[str, str]:
    """A new ``(id, key)``: the id is public, the key (256 random bits) is shown once."""
    return f"key_{secrets.token_hex(8)}", KEY_PREFIX + secrets.token_urlsafe(32)


def _iso(t: datetime) -> str:
    return format_utc(t)


def _instant(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{what} has no time zone")
    return parsed


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key's record (never the key itself)."""

    id: str
    sha256: str  # hex SHA-256 of the key
    tenant: str
    name: str
    created_by: str  # user@host
    created_at: datetime
    expires: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def usable(self, at: datetime) -> bool:
        return self.revoked_at is None and (self.expires is None or at < self.expires)

    def status(self, at: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires is not None and at >= self.expires:
            return "expired"
        return "active"

    def revoked(self, by: str, at: datetime) -> ApiKey:
        return replace(self, revoked_at=at, revoked_by=by)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "tenant": self.tenant,
            "name": self.name,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "expires": None if self.expires is None else _iso(self.expires),
            "revoked_at": None if self.revoked_at is None else _iso(self.revoked_at),
            "revoked_by": self.revoked_by,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKey:
        """The inverse of ``to_json``; ``ValueError`` names the field that is wrong."""
        for field in ("id", "sha256", "tenant", "created_by"):
            if not isinstance(data.get(field), str) or not data[field]:
                raise ValueError(f"api key field {field!r} must be a non-empty string")
        if not _ID_RE.match(data["id"]) or not _SHA_RE.match(data["sha256"]):
            raise ValueError("api key id or sha256 is malformed")
        name = data.get("name", "")
        by = data.get("revoked_by")
        if not isinstance(name, str) or (by is not None and not isinstance(by, str)):
            raise ValueError("api key fields 'name' and 'revoked_by' must be strings")
        expires, revoked = data.get("expires"), data.get("revoked_at")
        return cls(
            id=data["id"],
            sha256=data["sha256"],
            tenant=data["tenant"],
            name=name,
            created_by=data["created_by"],
            created_at=_instant(data.get("created_at"), "created_at"),
            expires=None if expires is None else _instant(expires, "expires"),
            revoked_at=None if revoked is None else _instant(revoked, "revoked_at"),
            revoked_by=by,
        )


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """Every key record, by id order, and the opaque version of the record they came from."""

    entries: tuple[ApiKey, ...] = ()
    version: str = ""

    def __post_init__(self) -> None:
        ids = [k.id for k in self.entries]
        if len(set(ids)) != len(ids) or len({k.sha256 for k in self.entries}) != len(ids):
            raise ValueError("api key ids and hashes are unique")
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda k: k.id)))

    def get(self, key_id: str) -> ApiKey | None:
        return next((k for k in self.entries if k.id == key_id), None)

    def to_json(self) -> list[dict[str, Any]]:
        return [k.to_json() for k in self.entries]


NO_KEYS = ApiKeys()


def api_keys_from_text(text: str | bytes | None, version: str) -> ApiKeys:
    """Key records from their stored JSON list; a damaged record is a ``StateError``."""
    if text is None:
        return ApiKeys((), version)
    try:
        raw = json.loads(text)
        if not isinstance(raw, list):
            raise ValueError("not a list")
        return ApiKeys(tuple(ApiKey.from_json(k) for k in raw), version)
    except (ValueError, TypeError, AttributeError) as exc:
        raise StateError(
            f"the API key records in the state are damaged: {exc}",
            hint="restore the state from a backup; every key is refused until then",
        ) from exc


def api_keys_moved_error(url: str) -> StateError:
    """A key create or revoke lost a race with another one."""
    return StateError(
        f"the API keys in {url} changed while this command ran (another key create or revoke)",
        hint="nothing was recorded; run the command again",
    )
