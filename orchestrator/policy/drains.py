"""Drained sites in routing (docs/runbooks.md): what a drain or a restore changes, for whom.

A drain is operational, not legal: it never adds a site to anyone's route, it only leaves drained
sites out of the route the law gives (``rules.route_without``), in the same order. So whoever is
routed with drains in force is routed inside their legal set, by construction. ``drain_effect`` is
the what-if a runbook command shows before it asks: the same audience classes as ``impact`` compared
with the drained set before and after, so "who loses service" covers everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from orchestrator.fleet.model import Fleet
from orchestrator.policy.impact import CellChange, audience_cells
from orchestrator.policy.rules import route_without
from orchestrator.policy.table import RouteTable

__all__ = ["drain_effect", "route_without"]


def drain_effect(
    fleet: Fleet,
    before: frozenset[str],
    after: frozenset[str],
    at: datetime,
    *,
    table: RouteTable | None = None,
    models: Iterable[str] | None = None,
) -> tuple[CellChange, ...]:
    """Every (model, residency, audience class) whose route at ``at`` changes when the drained
    sites go from ``before`` to ``after``: ``unavailable`` (they lose service: every site
    the law allows them is drained; a drain never makes a refusal of the law), ``rerouted`` or
    ``restored``."""
    table = table if table is not None and table.fleet is fleet else RouteTable.compile(fleet)
    cells = audience_cells(fleet, table.epochs.in_force(at))
    changes: list[CellChange] = []
    for model in sorted(models if models is not None else fleet.models):
        for cell in cells:
            legal = table.route(model, cell.principal, at)
            was, now = route_without(legal, before), route_without(legal, after)
            if was != now:
                changes.append(cell.change(model, was, now, legal))
    return tuple(changes)
