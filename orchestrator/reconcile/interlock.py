"""The safety interlock (docs/planning.md), with the meaning of a Kubernetes PodDisruptionBudget.

It guards against what a plan takes away, never against what it adds. For a jurisdiction J and
a model m in ``J.models``, a plan is refused when it **deletes** a deployment of m at a site of
J for a cause other than a directive (``config``, e.g. a site or model that left the fleet) and
leaves fewer than ``J.min_sites_per_model`` deployments of m at J's sites. A shortfall the plan
does not cause or deepen (a first rollout, export rules or residency keeping m from J's sites, a
withdraw) is a warning (``planning.guarantees``), never a refusal: refusing it would leave
every jurisdiction with nothing, and hold back the jurisdictions that are fine.

A refusal names its jurisdictions; the hint names the others that have changes, so that one
jurisdiction's interlock never has to hold back another's (``--jurisdiction``).
Site capacity is a fleet error caught before any plan (``planning.guarantees``).
Pure: fleet, desired pairs and changes in, violations out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from orchestrator.errors import RefusedError
from orchestrator.fleet.model import Fleet
from orchestrator.planning.guarantees import CAPACITY, MIN_SITES, shortfalls
from orchestrator.planning.plan import CauseKind, Change, InterlockViolation, Shortfall, cause_kind
from orchestrator.providers.base import Op, ResourceKind

__all__ = ["CAPACITY", "MIN_SITES", "check_interlocks", "enforce", "plan_warnings"]


def disruptions(changes: Iterable[Change]) -> dict[tuple[str, str], list[str]]:
    """(jurisdiction, model) -> addresses of deployment deletions not caused by a directive."""
    out: dict[tuple[str, str], list[str]] = {}
    for c in changes:
        if (
            c.kind is ResourceKind.DEPLOYMENT
            and c.op is Op.DELETE
            and cause_kind(c.cause) is not CauseKind.DIRECTIVE
            and c.jurisdiction
        ):
            out.setdefault((c.jurisdiction, c.model), []).append(c.address)
    return out


def check_interlocks(
    fleet: Fleet,
    at: datetime,
    desired_pairs: frozenset[tuple[str, str]],
    changes: Iterable[Change] = (),
    unobservable: Collection[str] = (),
) -> tuple[InterlockViolation, ...]:
    """Every deletion that takes a jurisdiction's model below its budget, in a stable order.

    After the plan, J's sites hold exactly the desired pairs (a plan converges the sites it
    covers; sites it does not cover have no deletions, so they are never judged here). A site
    in ``unobservable`` is not covered: what it holds is unknown, so it never counts as
    serving when a deletion elsewhere is judged (fail closed).
    """
    del at  # the desired pairs already reflect the law at the plan's instant
    deleting = disruptions(changes)
    violations: list[InterlockViolation] = []
    for (jid, m), addresses in sorted(deleting.items()):
        j = fleet.jurisdictions.get(jid)
        if j is None or m not in j.models:
            continue  # no guarantee: the jurisdiction or its listing of m left the fleet
        need = j.min_sites_per_model
        count = sum(1 for s in j.sites if (m, s) in desired_pairs and s not in unobservable)
        if count >= need:
            continue
        violations.append(
            InterlockViolation(
                rule=MIN_SITES,
                jurisdiction=jid,
                subject=m,
                count=count,
                required=need,
                changes=tuple(sorted(addresses)),
                message=(
                    f"{jid}: the plan deletes {', '.join(sorted(addresses))} for a cause other "
                    f"than a directive, leaving {m} at {count} of {jid}'s sites, fewer than "
                    f"min_sites_per_model {need}"
                ),
                overridable=True,
            )
        )
    return tuple(violations)


def plan_warnings(
    fleet: Fleet,
    at: datetime,
    desired_pairs: frozenset[tuple[str, str]],
    violations: Iterable[InterlockViolation],
    jurisdictions: Iterable[str] | None = None,
) -> tuple[Shortfall, ...]:
    """Shortfalls after the plan that it neither causes nor deepens (those are violations)."""
    refused = {(v.jurisdiction, v.subject) for v in violations if v.rule == MIN_SITES}
    return tuple(
        s
        for s in shortfalls(fleet, at, desired_pairs, jurisdictions)
        if (s.jurisdiction, s.model) not in refused
    )


def enforce(
    violations: Iterable[InterlockViolation],
    allow_outage: str | None,
    *,
    changed: Iterable[str] = (),
) -> None:
    """Raise ``RefusedError`` unless every violation is overridable and a reason was given.

    ``changed`` is every jurisdiction the plan has changes for: those without a violation are
    suggested for ``--jurisdiction``, so that they need not wait.
    """
    violations = tuple(violations)
    if not violations:
        return
    concerned = sorted({v.jurisdiction for v in violations})
    others = sorted(set(changed) - set(concerned) - {""})
    hard = [v for v in violations if not v.overridable]
    if hard:
        raise RefusedError(
            f"the plan is refused for {', '.join(sorted({v.jurisdiction for v in hard}))}: "
            + "; ".join(v.message for v in hard),
            hint="raise the site's capacity in its region profile, or list fewer models in its "
            "jurisdiction (capacity cannot be overridden)",
        )
    if allow_outage is None or not allow_outage.strip():
        details = "; ".join(v.message for v in violations)
        hint = (
            'fix the fleet, or accept the outage with --allow-outage "REASON" (the reason is '
            "recorded in the audit log)"
        )
        if others:
            flags = " ".join(f"--jurisdiction {j}" for j in others)
            hint += f"; the other jurisdictions' changes can go ahead alone: {flags}"
        raise RefusedError(
            f"the plan is refused by the safety interlock for {', '.join(concerned)}: {details}",
            hint=hint,
        )
