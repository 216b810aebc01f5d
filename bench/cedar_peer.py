"""The generated fleet judged by Cedar (``cedarpy``), for bench/route.py.

The policies and entities are the package's own export (``orchestrator.policy.cedar``, what
``sovereign export --format cedar`` writes), so the bench times exactly what a team checking
Sovereign with Cedar would run. This module only adds what a caller of Cedar supplies: one
``Person`` entity per principal asked about, the requests, and per-model policy slices.

A request is (``Person``, ``Action::"serve"``, ``Site``) with the model in its context; a
route is the set of sites Cedar allows, which the bench checks equals the route table's set
(Cedar decides per site; ordering the route is left to the caller, as in the table).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from orchestrator.fleet.model import Fleet
from orchestrator.policy.cedar import CedarExport, cedar_request, person_entity
from orchestrator.policy.principal import Principal

__all__ = ["CedarFleet"]


class CedarFleet:
    """The fleet's rules at one instant as a Cedar policy set and entity store."""

    def __init__(self, fleet: Fleet, at: datetime, principals: list[Principal]) -> None:
        import cedarpy

        self.fleet = fleet
        self.sites = sorted(fleet.sites)
        self.export = CedarExport(fleet, at)
        self.policy_count = 1 + len(self.export.forbids)
        self.policies = cedarpy.PolicySet.from_str(self.export.policies)
        self._slices: dict[str, Any] = {}
        entities = list(self.export.entities)
        self.person_ids: dict[Principal, str] = {}
        for p in principals:
            if p in self.person_ids:
                continue
            pid = self.person_ids[p] = f"p{len(self.person_ids)}"
            entities.append(person_entity(fleet, p, pid))
        self.entities = cedarpy.Entities.from_json_str(json.dumps(entities))

    def request(self, model: str, principal: Principal, site: str) -> dict[str, Any]:
        return cedar_request(self.person_ids[principal], model, site)

    def policy_slice(self, model: str) -> Any:
        """The permit and the forbids that can apply to ``model`` (those naming it or ``*``):
        Cedar evaluates every policy of the set it is given, so a large store is sliced per
        request, the usual remedy (the bench also times the whole set)."""
        ps = self._slices.get(model)
        if ps is None:
            import cedarpy

            ps = self._slices[model] = cedarpy.PolicySet.from_str(self.export.policies_for(model))
        return ps

    def allowed(self, model: str, principal: Principal, site: str, sliced: bool = True) -> bool:
        """One Cedar decision (on the model's policy slice, or on the whole policy set)."""
        import cedarpy

        policies = self.policy_slice(model) if sliced else self.policies
        result = cedarpy.is_authorized(
            self.request(model, principal, site), policies, self.entities
        )
        if result.diagnostics.errors:
            raise RuntimeError(f"Cedar evaluation errors: {result.diagnostics.errors[:3]}")
        return bool(result.allowed)

    def route_set(self, model: str, principal: Principal) -> frozenset[str]:
        """Every site Cedar allows for (model, principal): one batched call on the slice."""
        import cedarpy

        requests = [self.request(model, principal, s) for s in self.sites]
        results = cedarpy.is_authorized_batch(requests, self.policy_slice(model), self.entities)
        for r in results:
            if r.diagnostics.errors:
                raise RuntimeError(f"Cedar evaluation errors: {r.diagnostics.errors[:3]}")
        return frozenset(s for s, r in zip(self.sites, results, strict=True) if r.allowed)
