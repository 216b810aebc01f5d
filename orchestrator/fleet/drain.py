"""A drained site: the operational overlay on a fleet that runbooks write (docs/runbooks.md).

A drain takes a site out of every route while its deployments stay, so that ``restore`` is
instant. It is not part of the fleet files (an incident must not wait for a pull request): it
lives in the state store, which records who drained the site, when and why. The value is defined
here, at the bottom of the layers, because the state stores it, the policy honours it and the
gateway serves it, and those three must agree on one definition of "drained at instant t".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.fleet.instants import format_utc


def _instant(text: object, what: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be an ISO 8601 string, got {text!r}")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{what} {text!r} has no time zone")
    return parsed


@dataclass(frozen=True, slots=True)
class Drain:
    """One drained site: out of every route from ``at`` until ``until`` (None: until restored)."""

    site: str
    jurisdiction: str  # the site's owner when it was drained (scoping, status)
    reason: str
    by: str  # user@host that drained it
    at: datetime
    until: datetime | None = None
    allow_outage: str | None = None  # the audited reason when the drain overrode the interlock

    def active(self, t: datetime) -> bool:
        """Whether the site is out of routing at ``t``: a drain ends at ``until`` on its own."""
        return self.at <= t and (self.until is None or t < self.until)

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "jurisdiction": self.jurisdiction,
            "reason": self.reason,
            "by": self.by,
            "at": format_utc(self.at),
            "until": format_utc(self.until) if self.until is not None else None,
            "allow_outage": self.allow_outage,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Drain:
        """The inverse of ``to_json``; ``ValueError`` names the field that is wrong."""
        for key in ("site", "jurisdiction", "reason", "by"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"drain field {key!r} must be a non-empty string")
        until = data.get("until")
        outage = data.get("allow_outage")
        if outage is not None and not isinstance(outage, str):
            raise ValueError("drain field 'allow_outage' must be a string or null")
        return cls(
            site=data["site"],
            jurisdiction=data["jurisdiction"],
            reason=data["reason"],
            by=data["by"],
            at=_instant(data.get("at"), "drain field 'at'"),
            until=None if until is None else _instant(until, "drain field 'until'"),
            allow_outage=outage,
        )


@dataclass(frozen=True, slots=True)
class Drains:
    """Every recorded drain, by site, and the opaque version of the record they came from.

    ``version`` lets a writer replace the drains only if nobody changed them since it read them
    (the effect it showed and the interlock it checked are then still true).
    """

    entries: tuple[Drain, ...] = ()
    version: str = ""

    def __post_init__(self) -> None:
        sites = [d.site for d in self.entries]
        if len(set(sites)) != len(sites):
            raise ValueError("a site is drained at most once")
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda d: d.site)))

    def sites_at(self, t: datetime) -> frozenset[str]:
        """The sites out of routing at ``t``."""
        return frozenset(d.site for d in self.entries if d.active(t))

    def get(self, site_id: str) -> Drain | None:
        return next((d for d in self.entries if d.site == site_id), None)

    def with_drains(self, added: Iterable[Drain]) -> tuple[Drain, ...]:
        """These drains with ``added`` put in (a site drained again gets the new record)."""
        new = {d.site: d for d in self.entries}
        new.update((d.site, d) for d in added)
        return tuple(new.values())

    def without_sites(self, sites: Iterable[str]) -> tuple[Drain, ...]:
        gone = set(sites)
        return tuple(d for d in self.entries if d.site not in gone)

    def to_json(self) -> list[dict[str, Any]]:
        return [d.to_json() for d in self.entries]


NO_DRAINS = Drains()
