"""docs/decisions.md, rule by rule, for one (model, site, principal, time): the reference semantics.

This module is the slow, obviously-correct statement of the law. The compiled route table
(``policy.table``) must agree with it on every query; the property tests check exactly that.
Everything here is pure: frozen fleet in, frozen values out. Which directives are in force
when is defined once, in ``policy.epochs``, and read from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from orchestrator.fleet.model import Action, Audience, Directive, Fleet, Unlisted
from orchestrator.policy.epochs import in_force
from orchestrator.policy.principal import Principal


class Rule(StrEnum):
    """Reason codes, in rule order R0..R5."""

    NO_JURISDICTION = "no_jurisdiction"  # R0
    NOT_OFFERED = "not_offered"  # R1
    EXPORT = "export"  # R2
    RESIDENCY = "residency"  # R3
    WITHDRAWN = "withdrawn"  # R4
    DIRECTIVE = "directive"  # R5


@dataclass(frozen=True, slots=True)
class Reason:
    rule: Rule
    ref: str  # directive id for withdrawn/directive, else the profile (jurisdiction id)
    message: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule.value, "ref": self.ref, "message": self.message}


@dataclass(frozen=True, slots=True)
class Decision:
    reasons: tuple[Reason, ...]

    @property
    def allowed(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, object]:
        return {"allowed": self.allowed, "reasons": [r.to_json() for r in self.reasons]}


ALLOWED = Decision(())


def audience_matches(audience: Audience, principal: Principal) -> bool:
    """Fail closed: unknown nationality matches both nationality predicates."""
    nats = principal.nationalities
    if audience.except_groups and not audience.except_groups.isdisjoint(principal.groups):
        return False
    if audience.nationality_in is not None and nats and audience.nationality_in.isdisjoint(nats):
        return False
    if (
        audience.nationality_not_in is not None
        and nats
        and not audience.nationality_not_in.isdisjoint(nats)
    ):
        return False
    if audience.residency_in is not None and principal.residency not in audience.residency_in:
        return False
    return not (
        audience.residency_not_in is not None and principal.residency in audience.residency_not_in
    )


def offered(fleet: Fleet, model_id: str, site_id: str) -> bool:
    """R1: the owner of the site lists the model."""
    return model_id in fleet.owner_of(site_id).models


def export_allowed(fleet: Fleet, model_id: str, site_id: str) -> bool:
    """R2: the model may be placed in the site's jurisdiction."""
    model = fleet.models[model_id]
    owner = fleet.sites[site_id].jurisdiction
    if owner == model.origin or model.export_control == "open":
        return True
    origin = fleet.jurisdictions.get(model.origin)
    return origin is not None and owner in origin.export.get(model.export_control, frozenset())


def withdrawals(
    fleet: Fleet, model_id: str, site_id: str, active: Iterable[Directive]
) -> tuple[Directive, ...]:
    """R4: the in-force withdraw directives that take ``model_id`` off ``site_id``."""
    governing = fleet.sites[site_id].governing
    return tuple(
        d
        for d in active
        if d.action is Action.WITHDRAW and d.jurisdiction in governing and d.names(model_id)
    )


def suspensions(
    fleet: Fleet, model_id: str, site_id: str, principal: Principal, active: Iterable[Directive]
) -> tuple[Directive, ...]:
    """R5: the in-force suspend directives that stop serving ``model_id`` to ``principal``
    at ``site_id``."""
    governing = fleet.sites[site_id].governing
    return tuple(
        d
        for d in active
        if d.action is Action.SUSPEND
        and d.jurisdiction in governing
        and d.names(model_id)
        and audience_matches(d.audience, principal)
    )


def reachable(fleet: Fleet, site_id: str) -> bool:
    """Someone could be routed to the site (docs/planning.md, "Desired state"): some jurisdiction
    processes there, or unlisted countries may be served anywhere."""
    if fleet.settings.unlisted_countries is Unlisted.ANY:
        return True
    owner = fleet.sites[site_id].jurisdiction
    return any(owner in j.process_in for j in fleet.jurisdictions.values())


def deployable(fleet: Fleet, model_id: str, site_id: str, active: Iterable[Directive]) -> bool:
    """docs/planning.md, "Desired state": a deployment (m, s) is desired when R1, R2, R4 hold and s
    is reachable."""
    return (
        offered(fleet, model_id, site_id)
        and export_allowed(fleet, model_id, site_id)
        and not withdrawals(fleet, model_id, site_id, active)
        and reachable(fleet, site_id)
    )


def withdrawn_reason(d: Directive) -> Reason:
    """The R4 reason a withdraw directive gives (one per directive)."""
    return Reason(
        Rule.WITHDRAWN, d.id, f"withdrawn from sites governed by {d.jurisdiction}: {d.reference}"
    )


def suspended_reason(d: Directive) -> Reason:
    """The R5 reason a matching suspend directive gives (one per directive)."""
    return Reason(
        Rule.DIRECTIVE, d.id, f"suspended by {d.jurisdiction} for this principal: {d.reference}"
    )


def decide(
    fleet: Fleet,
    model_id: str,
    site_id: str,
    principal: Principal,
    at: datetime,
    active: tuple[Directive, ...] | None = None,
) -> Decision:
    """Every rule that fails for (model, site, principal, at), in rule order."""
    if active is None:
        active = in_force(fleet, at)
    site = fleet.sites[site_id]
    owner = fleet.jurisdictions[site.jurisdiction]
    model = fleet.models[model_id]
    home_id = fleet.home_of(principal.residency)
    reasons: list[Reason] = []
    if home_id is None and fleet.settings.unlisted_countries is not Unlisted.ANY:
        reasons.append(
            Reason(
                Rule.NO_JURISDICTION,
                "fleet",
                f"residency {principal.residency} belongs to no jurisdiction and "
                "unlisted_countries is deny",
            )
        )
    if not offered(fleet, model_id, site_id):
        reasons.append(
            Reason(Rule.NOT_OFFERED, owner.id, f"{owner.id} does not list {model_id} in its models")
        )
    if not export_allowed(fleet, model_id, site_id):
        reasons.append(
            Reason(
                Rule.EXPORT,
                model.origin,
                f"{model_id} ({model.export_control}, origin {model.origin}) may not be "
                f"placed in {owner.id}",
            )
        )
    if home_id is not None:
        home = fleet.jurisdictions[home_id]
        if owner.id not in home.process_in:
            reasons.append(
                Reason(
                    Rule.RESIDENCY,
                    home_id,
                    f"residents of {home_id} may be processed only in "
                    f"{', '.join(sorted(home.process_in)) or 'nowhere'}, not {owner.id}",
                )
            )
    for d in withdrawals(fleet, model_id, site_id, active):
        reasons.append(withdrawn_reason(d))
    for d in suspensions(fleet, model_id, site_id, principal, active):
        reasons.append(suspended_reason(d))
    return Decision(tuple(reasons)) if reasons else ALLOWED


def order_route(fleet: Fleet, allowed_sites: Iterable[str], home_id: str | None) -> tuple[str, ...]:
    """docs/decisions.md, "Route order": the home's failover list first, in order; then the rest by
    site id."""
    allowed = set(allowed_sites)
    head: list[str] = []
    if home_id is not None:
        head = [s for s in fleet.jurisdictions[home_id].failover if s in allowed]
    rest = sorted(allowed.difference(head))
    return (*head, *rest)


def route_without(route: tuple[str, ...], drained: frozenset[str]) -> tuple[str, ...]:
    """``route`` with drained sites (docs/runbooks.md) left out, order kept: a drain never adds a
    site, so the result is still inside the legal set."""
    if not drained:
        return route
    return tuple(s for s in route if s not in drained)


def route(fleet: Fleet, model_id: str, principal: Principal, at: datetime) -> tuple[str, ...]:
    """The reference route: every allowed site, in route order (docs/decisions.md)."""
    active = in_force(fleet, at)
    allowed = [s for s in fleet.sites if decide(fleet, model_id, s, principal, at, active).allowed]
    return order_route(fleet, allowed, fleet.home_of(principal.residency))
