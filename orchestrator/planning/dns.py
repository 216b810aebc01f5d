"""Desired DNS geolocation records (issue 5): where ``<model>.<domain>`` sends people, by country.

DNS cannot see a person's nationality or groups, so each country's record points at the first
site of the route for a principal located there with *unknown* nationality and *no* groups:
unknown nationality matches every nationality predicate and no groups exempts from nothing, so
that principal's route is contained in the route of anyone else located there (fail closed).
A country whose route is empty gets no record.

Route 53 answers a country without its own record from the default (``*``) record, so a default
record exists only where ``unlisted_countries: any``, and only pointing at a site that is allowed
for *everyone* it would answer: every unlisted country (one principal per distinct way the
directives' residency predicates treat them) and every listed country left without a record.
When no site satisfies all of them there is no default record. The gateway remains the
enforcement point; DNS is a convenience that must never be more permissive than it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

from orchestrator.fleet.model import Directive, Fleet, Unlisted
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from orchestrator.providers.base import Resource, ResourceKind, spec_of

DEFAULT_KEY = "*"


def dns_target(hosted_zone_id: str) -> str:
    """The pseudo target of a hosted zone's records; the reconciler resolves ``dns:``."""
    return f"dns:{hosted_zone_id}"


def record_name(model_id: str, domain: str) -> str:
    """``<model>.<domain>``, lower case as Route 53 reports names back."""
    return f"{model_id}.{domain.strip('.')}".lower()


def site_hostname(fleet: Fleet, site_id: str, domain: str) -> str:
    """The host a record points at: the site's endpoint host, else ``<site-id>.<domain>``."""
    endpoint = fleet.sites[site_id].endpoint
    host = urlsplit(endpoint).hostname if endpoint else None
    return (host or f"{site_id}.{domain.strip('.')}").lower()


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _route(table: RouteTable, model_id: str, residency: str, at: datetime) -> tuple[str, ...]:
    principal = Principal(residency)  # unknown nationality, no groups: the fail-closed default
    return table.route(model_id, principal, at)


def _unlisted_representatives(fleet: Fleet, directives: Iterable[Directive]) -> list[str]:
    """One residency per distinct way the rules can treat an unlisted country.

    Unlisted countries differ only in whether a directive's residency predicate names them:
    each named unlisted country stands for itself, and one fresh code stands for every other.
    """
    named: set[str] = set()
    for d in directives:
        for group in (d.audience.residency_in, d.audience.residency_not_in):
            named |= {c for c in group or () if fleet.home_of(c) is None}
    taken = named | set(fleet.country_home)
    fresh = next(
        f"{a}{b}"
        for a in "ZYXWVUTSRQPONMLKJIHGFEDCBA"
        for b in "ZYXWVUTSRQPONMLKJIHGFEDCBA"
        if f"{a}{b}" not in taken
    )
    return [fresh, *sorted(named)]


def desired_dns_records(
    fleet: Fleet, at: datetime, table: RouteTable | None = None
) -> frozenset[Resource]:
    """ROUTE resources for ``fleet.settings.dns`` (empty when the fleet names no DNS zone).
    Routes come from the compiled table (``table``: one of ``fleet``, if the caller holds it)."""
    dns = fleet.settings.dns
    if dns is None:
        return frozenset()
    if table is None or table.fleet is not fleet:
        table = RouteTable.compile(fleet)
    target = dns_target(dns.hosted_zone_id)
    active = table.epochs.in_force(at)
    records: set[Resource] = set()

    def record(model_id: str, key: str, site_id: str) -> Resource:
        return Resource(
            ResourceKind.ROUTE,
            target,
            model_id,
            key=key,
            spec=spec_of(
                site=site_id,
                name=record_name(model_id, dns.domain),
                value=site_hostname(fleet, site_id, dns.domain),
            ),
        )

    for model_id in sorted(fleet.models):
        uncovered: list[tuple[str, ...]] = []  # routes of those the default record would answer
        for country in sorted(fleet.country_home):
            route = _route(table, model_id, country, at)
            if route:
                records.add(record(model_id, country, route[0]))
            else:
                uncovered.append(route)
        if fleet.settings.unlisted_countries is not Unlisted.ANY:
            continue
        routes = [_route(table, model_id, c, at) for c in _unlisted_representatives(fleet, active)]
        allowed_for_all = set(routes[0]).intersection(*routes[1:], *uncovered)
        first = next((s for s in routes[0] if s in allowed_for_all), None)
        if first is not None:
            records.add(record(model_id, DEFAULT_KEY, first))
    return frozenset(records)
