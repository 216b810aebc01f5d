"""What left the fleet: sites (or whole jurisdictions) that still hold what Sovereign put there.

A site removed from its region profile, or a profile removed with all its sites, is no longer
in the working fleet, so nothing would observe it: its deployments and the (maybe restricted)
weights would stay, unmanaged and invisible. Sovereign remembers every site it placed
something at: each recorded resource carries the site's descriptor (``site_record``), and the
applied fleet names the rest. A *departed* site is one the state still records resources at
but the fleet no longer declares. The planner observes it through its provider (managed tags)
and plans the deletion of everything there, cause ``config``, naming what left; if the provider
cannot be reached, the state's records stand in for the observation, the apply fails that site
(exit 3), and the site stays recorded, and departed, until it is gone.

Models that leave the catalog (or a jurisdiction's ``models``) need no memory: providers observe
every managed artifact and deployment of the sites that remain. ``name_departures`` names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from orchestrator.fleet.model import Fleet, ProviderName, Site
from orchestrator.planning.plan import CauseKind, Change
from orchestrator.providers.base import Op, Resource, ResourceKind


class Departed(NamedTuple):
    """A site that left the fleet and what the state recorded there."""

    site: Site
    reason: str  # "site S left the fleet" | "jurisdiction J left the fleet"
    recorded: frozenset[Resource]

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site.id,
            "jurisdiction": self.site.jurisdiction,
            "provider": self.site.provider,
            "region": self.site.region,
            "reason": self.reason,
            "resources": sorted(r.address for r in self.recorded),
        }


def site_record(site: Site) -> dict[str, str]:
    """What the state keeps about a site with each resource placed there (enough to reach it
    through its provider once the fleet no longer declares it)."""
    return {
        "id": site.id,
        "jurisdiction": site.jurisdiction,
        "provider": site.provider,
        "region": site.region,
        "country": site.country,
        "operator": site.operator,
    }


def _site_from_record(data: Mapping[str, Any]) -> Site | None:
    try:
        jurisdiction = str(data["jurisdiction"])
        return Site(
            id=str(data["id"]),
            jurisdiction=jurisdiction,
            provider=ProviderName(str(data["provider"])),
            region=str(data["region"]),
            country=str(data.get("country", "")),
            operator=str(data.get("operator", "")),
            governed_by=frozenset(),
            governing=frozenset({jurisdiction}),
        )
    except (KeyError, TypeError, ValueError):  # ValueError: a provider no longer known
        return None


def _resource_from_record(data: Mapping[str, Any]) -> Resource | None:
    try:
        kind = ResourceKind(str(data["kind"]))
        spec = tuple(sorted((str(k), str(v)) for k, v in dict(data.get("spec") or {}).items()))
        return Resource(
            kind, str(data["target"]), str(data["model"]), str(data.get("key", "")), spec
        )
    except (KeyError, TypeError, ValueError):
        return None


def departed_sites(
    fleet: Fleet,
    recorded: Iterable[Mapping[str, Any]],
    applied: Callable[[], Fleet | None] = lambda: None,
) -> dict[str, Departed]:
    """Sites the state records artifacts or deployments at that the fleet no longer declares.

    ``recorded`` is ``StateStore.recorded_resources()``; ``applied`` gives the last applied
    fleet, which describes sites recorded before records carried their site (asked for only
    then: loading it verifies its signatures again).
    """
    applied_fleet: list[Fleet | None] = []
    sites: dict[str, Site] = {}
    held: dict[str, set[Resource]] = {}
    for row in recorded:
        data = row.get("resource", row) if isinstance(row, Mapping) else None
        if not isinstance(data, Mapping):
            continue
        resource = _resource_from_record(data)
        if resource is None or resource.kind is ResourceKind.ROUTE:
            continue
        if resource.target in fleet.sites:
            continue
        site = None
        if isinstance(data.get("site"), Mapping):
            site = _site_from_record(data["site"])
        if site is None:
            if not applied_fleet:
                applied_fleet.append(applied())
            if applied_fleet[0] is not None:
                site = applied_fleet[0].sites.get(resource.target)
        if site is None:
            continue  # nothing says where it is: it cannot be reached (status shows the record)
        sites.setdefault(site.id, site)
        held.setdefault(site.id, set()).add(resource)
    out: dict[str, Departed] = {}
    for site_id, site in sorted(sites.items()):
        reason = (
            f"site {site_id} left the fleet"
            if site.jurisdiction in fleet.jurisdictions
            else f"jurisdiction {site.jurisdiction} left the fleet"
        )
        out[site_id] = Departed(site, reason, frozenset(held[site_id]))
    return out


def name_departures(
    changes: Iterable[Change], fleet: Fleet, departed: Mapping[str, Departed]
) -> tuple[Change, ...]:
    """Deletions of ``config`` cause, with what left the fleet named in ``reason``."""
    out: list[Change] = []
    for c in changes:
        reason = ""
        if c.op is Op.DELETE and c.kind is not ResourceKind.ROUTE and c.cause == CauseKind.CONFIG:
            site = fleet.sites.get(c.target)
            if c.target in departed:
                reason = departed[c.target].reason
            elif c.model not in fleet.models:
                reason = f"model {c.model} left the catalog"
            elif site is not None and c.model not in fleet.jurisdictions[site.jurisdiction].models:
                reason = f"{site.jurisdiction} no longer lists {c.model}"
        out.append(replace(c, reason=reason) if reason else c)
    return tuple(out)
