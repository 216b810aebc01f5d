"""The routing table the gateway serves from, and the explanation it gives for a refusal.

The gateway never decides the law itself: it asks the compiled ``policy.table.RouteTable`` for
the route and ``policy.explain`` for the reasons. ``ServingTable`` is the one seam between the
two, so the request path sees a single small interface (``route``, ``explain_json``,
``version``) and a table swap is one reference assignment of an immutable value. Drained sites
(docs/runbooks.md) are left out of the table's routes here, through ``policy.rules.route_without``:
the gateway tries the next legal site, never one the law does not already allow.

``verdict`` is the one answer the gateway and ``sovereign authz`` both give for a request:
served along a route, ``404`` for a model the fleet does not know, ``451`` when the law leaves
the route empty, ``503 site_unavailable`` when only drains do (an outage, not the law:
docs/gateway.md, "Drained routes"); ``refusal_body`` is the JSON body of the last three.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from orchestrator.fleet.drain import NO_DRAINS, Drains
from orchestrator.fleet.model import Fleet
from orchestrator.policy.explain import Explainer
from orchestrator.policy.principal import Principal
from orchestrator.policy.rules import route_without
from orchestrator.policy.table import RouteTable

__all__ = ["ServingTable", "Verdict"]

ALLOWED = 200
UNKNOWN_MODEL = 404
REFUSED = 451
UNAVAILABLE = 503


@dataclass(frozen=True, slots=True)
class Verdict:
    """One request's answer: ``status`` 200 (served along ``route``), 404, 451 or 503; for 503,
    ``drained`` names the drained sites the law would have served from, in route order."""

    status: int
    route: tuple[str, ...] = ()
    drained: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServingTable:
    """A compiled, verified fleet as served; immutable so in-flight requests keep theirs."""

    table: RouteTable
    serial: int | None  # state serial it was applied under (None: working fleet)
    drains: Drains = NO_DRAINS

    @classmethod
    def compile(
        cls,
        fleet: Fleet,
        serial: int | None = None,
        previous: ServingTable | None = None,
        drains: Drains = NO_DRAINS,
    ) -> ServingTable:
        """Compile ``fleet``; with ``previous`` only the keys changed directives reach are
        rebuilt (the policy table reuses the rest)."""
        prior = previous.table if previous is not None else None
        return cls(RouteTable.compile(fleet, previous=prior), serial, drains)

    @property
    def fleet(self) -> Fleet:
        return self.table.fleet

    @property
    def version(self) -> str:
        return self.table.version

    def knows(self, model_id: str) -> bool:
        return model_id in self.fleet.models

    def route(self, model_id: str, principal: Principal, at: datetime) -> tuple[str, ...]:
        """Sites that may serve, in route order (docs/decisions.md); empty means refused. Unknown
        models: empty."""
        if model_id not in self.fleet.models:
            return ()
        route = self.table.route(model_id, principal, at)
        if not self.drains.entries:
            return route
        return route_without(route, self.drains.sites_at(at))

    def verdict(self, model_id: str, principal: Principal, at: datetime) -> Verdict:
        """The route, or why there is none (see the module docstring)."""
        route = self.route(model_id, principal, at)
        if route:
            return Verdict(ALLOWED, route)
        if model_id not in self.fleet.models:
            return Verdict(UNKNOWN_MODEL)
        if self.drains.entries:
            legal = self.table.route(model_id, principal, at)
            if legal:
                return Verdict(UNAVAILABLE, (), legal)  # every legal site is drained
        return Verdict(REFUSED)

    def refusal_body(
        self, verdict: Verdict, model_id: str, principal: Principal, at: datetime
    ) -> dict[str, Any]:
        """The JSON body of a 404, 451 or 503 verdict (docs/gateway.md, "Endpoints")."""
        if verdict.status == UNKNOWN_MODEL:
            # OpenAI's own answer for an unknown model: type invalid_request_error, its code.
            return {
                "error": {
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                    "param": "model",
                    "message": f"model {model_id!r} is not in the fleet",
                }
            }
        if verdict.status == UNAVAILABLE:
            error: dict[str, Any] = {
                "type": "site_unavailable",
                "message": f"{model_id} may be served to this principal only at drained sites "
                f"({', '.join(verdict.drained)}): an outage, not a refusal of the law",
                "model": model_id,
                "table": self.version,
                "sites": list(verdict.drained),
            }
        else:
            error = {
                "type": "unavailable_for_legal_reasons",
                "message": f"{model_id} may not be served to this principal at any site",
                "model": model_id,
                "table": self.version,
            }
        return {"error": error, "explanation": self.explain_json(model_id, principal, at)}

    @cached_property
    def _explainers(self) -> dict[frozenset[str], Explainer]:
        # Built on the first refusal and kept with the table: a flood of 451s costs lookups,
        # not a rule-by-rule re-derivation per request. One per drained set (drains with an
        # ``until`` change it over time; there are few).
        return {}

    def explain_json(self, model_id: str, principal: Principal, at: datetime) -> dict[str, Any]:
        """The ``explain --json`` object (docs/json.md) for this query (as ``policy.explain``)."""
        drained = self.drains.sites_at(at)
        explainer = self._explainers.get(drained)
        if explainer is None:
            explainer = Explainer(self.fleet, self.table, drained)
            self._explainers[drained] = explainer
        result: dict[str, Any] = explainer.explain(model_id, principal, at).to_json()
        return result
