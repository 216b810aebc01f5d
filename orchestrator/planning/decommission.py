"""A jurisdiction that leaves the fleet is decommissioned only on purpose (docs/gitops.md,
"what leaves the fleet is torn down").

Deleting a profile (and the references to it) from the fleet repository would otherwise delete
every deployment and artifact of that jurisdiction, unattended. So a jurisdiction the state
still knows (it pins its authority set, or records resources at its sites) but the fleet no
longer declares is *leaving*: ``plan`` lists it, ``apply`` refuses it unless the person running
it says ``--decommission J --reason TEXT`` (audited), the other jurisdictions can still go with
``--jurisdiction``, and the controller never decommissions: it applies the others and reports
it. A decommission also unpins the jurisdiction's authority set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.errors import RefusedError, UsageError
from orchestrator.fleet.model import Fleet

__all__ = [
    "DECOMMISSIONED",
    "DECOMMISSION_REFUSED",
    "DecommissionPending",
    "allow_decommission",
    "leaving_jurisdictions",
    "record_decommission",
]

DECOMMISSIONED = "jurisdiction.decommissioned"
DECOMMISSION_REFUSED = "decommission.refused"


class DecommissionPending(RefusedError):
    """A plan decommissions jurisdictions nobody asked to decommission."""

    def __init__(self, message: str, *, hint: str, jurisdictions: tuple[str, ...]) -> None:
        super().__init__(message, hint=hint)
        self.jurisdictions = jurisdictions


def leaving_jurisdictions(
    fleet: Fleet, departed_jurisdictions: Iterable[str], pinned: Iterable[str]
) -> tuple[str, ...]:
    """Jurisdictions the state knows (resources recorded at their sites, a pinned authority
    set) that the fleet no longer declares, sorted."""
    known = set(departed_jurisdictions) | set(pinned)
    return tuple(sorted(j for j in known if j and j not in fleet.jurisdictions))


def allow_decommission(
    planned: tuple[str, ...], allowed: Mapping[str, str], audit: Any | None
) -> None:
    """Refuse (``DecommissionPending``, audited as ``decommission.refused``) a plan that
    decommissions a jurisdiction not in ``allowed`` (jurisdiction -> reason). A jurisdiction
    named but not leaving is a usage error (a typo must not look like consent)."""
    stray = sorted(set(allowed) - set(planned))
    if stray:
        raise UsageError(
            f"--decommission {stray[0]}: {stray[0]} is not leaving the fleet in this plan",
            hint="a decommission is for a jurisdiction whose profile was removed; `sovereign "
            "plan` lists them under decommission",
        )
    refused = tuple(j for j in planned if j not in allowed)
    if refused:
        names = ", ".join(refused)
        if audit is not None:
            audit.append(DECOMMISSION_REFUSED, {"jurisdictions": list(refused)})
        others = "the other jurisdictions' changes can go with --jurisdiction J"
        raise DecommissionPending(
            f"the plan decommissions {names}: its profile left the fleet, and every deployment "
            f"and artifact at its sites would be deleted and its authority set unpinned",
            hint=f"if that is meant: sovereign apply --decommission {refused[0]} --reason "
            f"TEXT (audited); otherwise restore its profile; {others}",
            jurisdictions=refused,
        )


def record_decommission(planned: tuple[str, ...], allowed: Mapping[str, str], audit: Any) -> None:
    """Audit each decommission carried out, with its reason (``jurisdiction.decommissioned``),
    once the plan is confirmed and before anything is deleted."""
    for j in planned:
        audit.append(DECOMMISSIONED, {"jurisdiction": j, "reason": allowed[j]})
