"""The generated fleet encoded for Cedar (``cedarpy``), for bench/route.py.

Cedar is what a team would pick to write these rules as policies instead of compiling them.
The encoding, at one instant:

- entities: ``Jurisdiction`` (the models it offers, where its residents may be processed),
  ``Site`` (its owner; its parents are its governing jurisdictions, ``Site.governing`` as
  ``fleet.model.governing_set`` defines it: owner, ``governed_by`` and the law of the soil, so
  ``resource in Jurisdiction::"J"`` means "J governs this site"), ``Model`` (origin, whether
  export is open, the jurisdictions its origin's export list allows), and one ``Person`` per
  principal asked about (residency, home, nationalities, groups);
- one ``permit`` for R0-R3; one ``forbid`` per withdraw in force (R4) and per suspend in force
  (R5), the audience as conditions on the principal's attributes, matched fail-closed (unknown
  nationality matches both nationality predicates) and group exemptions as ``unless``.

A request is (``Person``, ``Action::"serve"``, ``Site``) with the model in its context; a
route is the set of sites Cedar allows, which the bench checks equals the route table's set
(Cedar decides per site; ordering the route is left to the caller, as in the table).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from orchestrator.fleet.model import ALL_MODELS, Action, Directive, Fleet, Unlisted
from orchestrator.policy.epochs import in_force
from orchestrator.policy.principal import Principal

__all__ = ["CedarFleet"]


def _ref(kind: str, ident: str) -> dict[str, str]:
    return {"type": kind, "id": ident}


def _entity_ref(kind: str, ident: str) -> dict[str, dict[str, str]]:
    return {"__entity": _ref(kind, ident)}


def _strings(values: frozenset[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in sorted(values)) + "]"


def _models_condition(d: Directive) -> str | None:
    if ALL_MODELS in d.models:
        return None
    return "[" + ", ".join(f'Model::"{m}"' for m in sorted(d.models)) + "].contains(context.model)"


def _forbid(d: Directive) -> str:
    conditions: list[str] = []
    models = _models_condition(d)
    if models is not None:
        conditions.append(models)
    unless = ""
    if d.action is Action.SUSPEND:
        a = d.audience
        if a.nationality_in is not None:
            conditions.append(
                "(!principal.nationality_known || "
                f"principal.nationalities.containsAny({_strings(a.nationality_in)}))"
            )
        if a.nationality_not_in is not None:
            conditions.append(
                f"!principal.nationalities.containsAny({_strings(a.nationality_not_in)})"
            )
        if a.residency_in is not None:
            conditions.append(f"{_strings(a.residency_in)}.contains(principal.residency)")
        if a.residency_not_in is not None:
            conditions.append(f"!{_strings(a.residency_not_in)}.contains(principal.residency)")
        if a.except_groups:
            unless = f" unless {{ principal.groups.containsAny({_strings(a.except_groups)}) }}"
    when = f" when {{ {' && '.join(conditions)} }}" if conditions else ""
    return (
        f'@id("{d.id}")\nforbid (principal, action == Action::"serve", '
        f'resource in Jurisdiction::"{d.jurisdiction}"){when}{unless};'
    )


class CedarFleet:
    """The fleet's rules at one instant as a Cedar policy set and entity store."""

    def __init__(self, fleet: Fleet, at: datetime, principals: list[Principal]) -> None:
        import cedarpy

        self.fleet = fleet
        self.sites = sorted(fleet.sites)
        unlisted_any = fleet.settings.unlisted_countries is Unlisted.ANY
        residency = (
            "((principal has home && principal.home.process_in.contains(resource.owner))"
            + (" || !(principal has home))" if unlisted_any else ")")
        )
        permit = (
            '@id("R0-R3")\npermit (principal, action == Action::"serve", resource) when {\n'
            "  resource.owner.models.contains(context.model) &&\n"
            "  (context.model.origin == resource.owner || context.model.open ||\n"
            "   context.model.export_to.contains(resource.owner)) &&\n"
            f"  {residency}\n}};"
        )
        active = [d for d in in_force(fleet, at) if d.action in (Action.SUSPEND, Action.WITHDRAW)]
        self.policy_count = 1 + len(active)
        self._permit = permit
        self._forbids = [(d.models, _forbid(d)) for d in active]
        self.policies = cedarpy.PolicySet.from_str(
            "\n".join([permit, *(f for _, f in self._forbids)])
        )
        self._slices: dict[str, Any] = {}
        entities: list[dict[str, Any]] = []
        for j in fleet.jurisdictions.values():
            entities.append(
                {
                    "uid": _ref("Jurisdiction", j.id),
                    "attrs": {
                        "models": [_entity_ref("Model", m) for m in sorted(j.models)],
                        "process_in": [
                            _entity_ref("Jurisdiction", x) for x in sorted(j.process_in)
                        ],
                    },
                    "parents": [],
                }
            )
        for s in fleet.sites.values():
            entities.append(
                {
                    "uid": _ref("Site", s.id),
                    "attrs": {"owner": _entity_ref("Jurisdiction", s.jurisdiction)},
                    "parents": [_ref("Jurisdiction", g) for g in sorted(s.governing)],
                }
            )
        for m in fleet.models.values():
            origin = fleet.jurisdictions.get(m.origin)
            export_to = origin.export.get(m.export_control, frozenset()) if origin else frozenset()
            entities.append(
                {
                    "uid": _ref("Model", m.id),
                    "attrs": {
                        "origin": _entity_ref("Jurisdiction", m.origin),
                        "open": m.export_control == "open",
                        "export_to": [_entity_ref("Jurisdiction", x) for x in sorted(export_to)],
                    },
                    "parents": [],
                }
            )
        self.person_ids: dict[Principal, str] = {}
        for p in principals:
            if p in self.person_ids:
                continue
            pid = self.person_ids[p] = f"p{len(self.person_ids)}"
            attrs: dict[str, Any] = {
                "residency": p.residency,
                "nationalities": sorted(p.nationalities),
                "nationality_known": bool(p.nationalities),
                "groups": sorted(p.groups),
            }
            home = fleet.home_of(p.residency)
            if home is not None:
                attrs["home"] = _entity_ref("Jurisdiction", home)
            entities.append({"uid": _ref("Person", pid), "attrs": attrs, "parents": []})
        self.entities = cedarpy.Entities.from_json_str(json.dumps(entities))

    def request(self, model: str, principal: Principal, site: str) -> dict[str, Any]:
        return {
            "principal": _ref("Person", self.person_ids[principal]),
            "action": _ref("Action", "serve"),
            "resource": _ref("Site", site),
            "context": {"model": _entity_ref("Model", model)},
        }

    def policy_slice(self, model: str) -> Any:
        """The permit and the forbids that can apply to ``model`` (those naming it or ``*``):
        Cedar evaluates every policy of the set it is given, so a large store is sliced per
        request, the usual remedy (the bench also times the whole set)."""
        ps = self._slices.get(model)
        if ps is None:
            import cedarpy

            chosen = [f for models, f in self._forbids if ALL_MODELS in models or model in models]
            ps = self._slices[model] = cedarpy.PolicySet.from_str(
                "\n".join([self._permit, *chosen])
            )
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
