"""The law at the point of action (docs/planning.md): no placement is carried out that R1, R2 or R4
forbid.

Plans are made by the planner, which only asks for what the law allows. But a change can reach
the appliers by other ways: a saved plan someone edited, a runbook, the controller, a future
engine, a planner bug. So every change that places something at a site (an artifact copy or a
deployment, created or updated) is checked here, by the applier itself, immediately before the
provider is called, against the verified fleet:

- R1 the site's jurisdiction lists the model;
- R2 export rules let the model be placed in that jurisdiction;
- R4 no valid ``withdraw`` in force names the model at the site, judged at the instant the plan
  was made for and over the clock-skew window around the real clock (``policy.clock``):
  whichever forbids, forbids (fail closed).

A change naming a site or model that the fleet does not know is refused as well. Removals are
never refused here: taking weights away can only bring a site closer to the law.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from orchestrator.fleet.model import Fleet
from orchestrator.planning.plan import Change
from orchestrator.policy.clock import instants_within
from orchestrator.policy.epochs import in_force
from orchestrator.policy.rules import export_allowed, offered, withdrawals
from orchestrator.providers.base import Op, ResourceKind

__all__ = ["PLACEMENT_KINDS", "forbidden_placement", "instants_for"]

PLACEMENT_KINDS = frozenset({ResourceKind.ARTIFACT, ResourceKind.DEPLOYMENT})


def instants_for(fleet: Fleet, plan_at: datetime, now: datetime) -> tuple[datetime, ...]:
    """The plan's instant, and every state of the skew window around the real clock."""
    return (plan_at, *instants_within(fleet, now))


def forbidden_placement(fleet: Fleet, change: Change, instants: Iterable[datetime]) -> str | None:
    """Why the law forbids carrying ``change`` out, or None when it may go ahead.

    Only creates and updates of artifacts and deployments are judged; ``instants`` are the
    moments R4 is checked at (see ``instants_for``).
    """
    if change.kind not in PLACEMENT_KINDS or change.op is Op.DELETE:
        return None
    site = fleet.sites.get(change.target)
    if site is None:
        return f"site {change.target!r} is not in the fleet"
    model = fleet.models.get(change.model)
    if model is None:
        return f"model {change.model!r} is not in the model catalog"
    if not offered(fleet, model.id, site.id):
        return (
            f"R1 not_offered: {site.jurisdiction} does not list {model.id} among the models "
            f"served at its sites"
        )
    if not export_allowed(fleet, model.id, site.id):
        return (
            f"R2 export: {model.id} (origin {model.origin}, {model.export_control}) may not be "
            f"placed in {site.jurisdiction}"
        )
    for at in instants:
        withdrawn = withdrawals(fleet, model.id, site.id, in_force(fleet, at))
        if withdrawn:
            ids = ", ".join(d.id for d in withdrawn)
            return (
                f"R4 withdrawn: {model.id} is withdrawn from {site.id} by {ids} at {at.isoformat()}"
            )
    return None
