"""Safety interlocks (SPEC 4): refuse a plan that would leave a jurisdiction under-served.

For every jurisdiction J and every model m in ``J.models``, the deployments of m at J's sites
after the plan (the desired pairs) must number at least ``J.min_sites_per_model``. A shortfall
is accepted only when directives explain it: counting also the sites where nothing but an
in-force withdraw blocks m would meet the minimum. Any other shortfall is refused, whether it
comes from deletions or from configuration (the model is not offered at enough sites, export
rules forbid it, nobody may be processed there): the reading that fails closed.

Site ``capacity`` is checked too: more desired deployments than a site can hold refuses the plan
naming the site, instead of silently dropping some (no override: it cannot be carried out).
Pure: fleet and desired pairs in, violations out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from orchestrator.errors import RefusedError
from orchestrator.fleet.model import Fleet
from orchestrator.planning.plan import Change, InterlockViolation
from orchestrator.policy.rules import export_allowed, in_force, offered, reachable, withdrawals
from orchestrator.providers.base import Op, ResourceKind

MIN_SITES = "min_sites_per_model"
CAPACITY = "capacity"


def _blocking_changes(
    changes: Iterable[Change], model_id: str, sites: Iterable[str]
) -> tuple[str, ...]:
    site_set = set(sites)
    return tuple(
        c.address
        for c in changes
        if c.kind is ResourceKind.DEPLOYMENT
        and c.op is Op.DELETE
        and c.model == model_id
        and c.target in site_set
    )


def check_interlocks(
    fleet: Fleet,
    at: datetime,
    desired_pairs: frozenset[tuple[str, str]],
    changes: Iterable[Change] = (),
) -> tuple[InterlockViolation, ...]:
    """Every interlock the state after the plan would break, in a stable order."""
    changes = tuple(changes)
    active = in_force(fleet, at)
    violations: list[InterlockViolation] = []
    for j in sorted(fleet.jurisdictions.values(), key=lambda j: j.id):
        need = j.min_sites_per_model
        for m in sorted(j.models):
            if m not in fleet.models:
                continue
            count = sum(1 for s in j.sites if (m, s) in desired_pairs)
            if count >= need:
                continue
            # Sites where only a withdraw keeps m away: a directive-caused shortfall is lawful.
            blocked_by_law = [
                s
                for s in j.sites
                if (m, s) not in desired_pairs
                and offered(fleet, m, s)
                and export_allowed(fleet, m, s)
                and reachable(fleet, s)
                and withdrawals(fleet, m, s, active)
            ]
            if count + len(blocked_by_law) >= need:
                continue
            breaking = _blocking_changes(changes, m, j.sites)
            why = (
                f"the plan deletes {', '.join(breaking)}"
                if breaking
                else "the fleet configuration does not place it at enough sites "
                "(not offered, export rules, or no one may be processed there)"
            )
            violations.append(
                InterlockViolation(
                    rule=MIN_SITES,
                    jurisdiction=j.id,
                    subject=m,
                    count=count,
                    required=need,
                    changes=breaking,
                    message=(
                        f"{m} would be deployed at {count} of {j.id}'s sites, fewer than "
                        f"min_sites_per_model {need}, for a cause other than a directive: {why}"
                    ),
                    overridable=True,
                )
            )
    per_site: dict[str, int] = {}
    for _m, s in desired_pairs:
        per_site[s] = per_site.get(s, 0) + 1
    for site_id in sorted(per_site):
        site = fleet.sites[site_id]
        if site.capacity is not None and per_site[site_id] > site.capacity:
            creates = tuple(
                c.address
                for c in changes
                if c.kind is ResourceKind.DEPLOYMENT and c.op is Op.CREATE and c.target == site_id
            )
            violations.append(
                InterlockViolation(
                    rule=CAPACITY,
                    jurisdiction=site.jurisdiction,
                    subject=site_id,
                    count=per_site[site_id],
                    required=site.capacity,
                    changes=creates,
                    message=(
                        f"site {site_id} would hold {per_site[site_id]} model deployments, more "
                        f"than its capacity {site.capacity}"
                    ),
                    overridable=False,
                )
            )
    return tuple(violations)


def enforce(violations: Iterable[InterlockViolation], allow_outage: str | None) -> None:
    """Raise ``RefusedError`` unless every violation is overridable and a reason was given."""
    violations = tuple(violations)
    if not violations:
        return
    hard = [v for v in violations if not v.overridable]
    if hard:
        raise RefusedError(
            "the plan is refused: " + "; ".join(v.message for v in hard),
            hint="raise the site's capacity in its region profile, or list fewer models in its "
            "jurisdiction (capacity cannot be overridden)",
        )
    if allow_outage is None or not allow_outage.strip():
        details = "; ".join(v.message for v in violations)
        raise RefusedError(
            f"the plan is refused by the safety interlock: {details}",
            hint='fix the fleet, or accept the outage with --allow-outage "REASON" (the reason '
            "is recorded in the audit log)",
        )
