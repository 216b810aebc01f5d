"""The fleet's rules at one instant as Cedar policies and entities (``export --format cedar``).

Teams that check authorisation with Cedar can check Sovereign's decisions with their own tool:
the export agrees with the route table on every (model, site, principal) asked (tests/export
runs Cedar itself on it). The encoding (docs/evidence.md, "Checking Sovereign with Cedar"):

- entities: ``Jurisdiction`` (the models it offers, where its residents may be processed),
  ``Site`` (its owner; its parents are its governing jurisdictions, ``Site.governing`` as
  ``fleet.model.governing_set`` defines it, never re-derived here: owner, ``governed_by`` and
  the law of the soil, so ``resource in Jurisdiction::"J"`` means "J governs this site"),
  ``Model`` (origin, whether export is open, the jurisdictions its origin's export
  list allows). A ``Person`` is made per principal asked about (:func:`person_entity`:
  residency, home, nationalities, whether any is known, groups).
- policies: one ``permit`` for R0-R3; one ``forbid`` per withdraw in force (R4) and per suspend
  in force (R5), the audience as conditions on the principal's attributes, matched fail closed
  (unknown nationality matches both nationality predicates), group exemptions as ``unless``.

A request is (``Person``, ``Action::"serve"``, ``Site``) with ``{"model": Model}`` in its
context; the sites Cedar allows are the route's sites (ordering the route is not Cedar's job).
Pure text and JSON: nothing here imports Cedar.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from orchestrator.fleet.instants import format_utc
from orchestrator.fleet.model import ALL_MODELS, Action, Directive, Fleet, Unlisted
from orchestrator.policy.epochs import in_force
from orchestrator.policy.principal import Principal

__all__ = ["CedarExport", "cedar_export", "cedar_request", "person_entity"]


def _ref(kind: str, ident: str) -> dict[str, str]:
    return {"type": kind, "id": ident}


def _entity_ref(kind: str, ident: str) -> dict[str, dict[str, str]]:
    return {"__entity": _ref(kind, ident)}


def _strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in sorted(values)) + "]"


def _id(text: str) -> str:
    return json.dumps(text)  # a Cedar string literal: same escapes as JSON for what ids hold


def _models_condition(d: Directive) -> str | None:
    if ALL_MODELS in d.models:
        return None
    listed = ", ".join(f"Model::{_id(m)}" for m in sorted(d.models))
    return f"[{listed}].contains(context.model)"


def forbid_policy(d: Directive) -> str:
    """The ``forbid`` of one withdraw (R4) or suspend (R5) directive."""
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
        f'@id({_id(d.id)})\nforbid (principal, action == Action::"serve", '
        f"resource in Jurisdiction::{_id(d.jurisdiction)}){when}{unless};"
    )


def permit_policy(fleet: Fleet) -> str:
    """The one ``permit``: R0-R3 (offered, exportable, residency)."""
    unlisted_any = fleet.settings.unlisted_countries is Unlisted.ANY
    residency = "((principal has home && principal.home.process_in.contains(resource.owner))" + (
        " || !(principal has home))" if unlisted_any else ")"
    )
    return (
        '@id("R0-R3")\npermit (principal, action == Action::"serve", resource) when {\n'
        "  resource.owner.models.contains(context.model) &&\n"
        "  (context.model.origin == resource.owner || context.model.open ||\n"
        "   context.model.export_to.contains(resource.owner)) &&\n"
        f"  {residency}\n}};"
    )


class CedarExport:
    """The policies (one permit, then a forbid per directive in force) and the entities."""

    def __init__(self, fleet: Fleet, at: datetime) -> None:
        self.fleet = fleet
        self.at = at
        self.permit = permit_policy(fleet)
        active = [d for d in in_force(fleet, at) if d.action in (Action.SUSPEND, Action.WITHDRAW)]
        # (models named, jurisdiction, policy text) per directive in force
        self.forbids: list[tuple[frozenset[str], str, str]] = [
            (d.models, d.jurisdiction, forbid_policy(d)) for d in active
        ]
        self._by_model: dict[str, list[int]] = {}  # model (or "*") -> indexes into forbids
        for index, (models, _, _) in enumerate(self.forbids):
            for m in models:
                self._by_model.setdefault(m, []).append(index)
        self.entities = fleet_entities(fleet)

    @property
    def policies(self) -> str:
        return "\n".join([self.permit, *(f for _, _, f in self.forbids)]) + "\n"

    def policies_for(self, model: str, governing: frozenset[str] | None = None) -> str:
        """The permit and the forbids that can apply to ``model`` (those naming it or ``*``)
        and, with ``governing`` (a site's governing set), to that site (those from one of
        its jurisdictions): the same decisions on a smaller set (Cedar evaluates every
        policy it is given)."""
        indexes = sorted({*self._by_model.get(model, ()), *self._by_model.get(ALL_MODELS, ())})
        chosen = [
            self.forbids[i][2]
            for i in indexes
            if governing is None or self.forbids[i][1] in governing
        ]
        return "\n".join([self.permit, *chosen]) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "cedar",
            "at": format_utc(self.at),
            "fleet": self.fleet.digest,
            "policies": self.policies,
            "entities": self.entities,
            "request": {
                "principal": 'Person::"<id>" (see person entity)',
                "action": 'Action::"serve"',
                "resource": 'Site::"<site id>"',
                "context": {"model": {"__entity": {"type": "Model", "id": "<model id>"}}},
            },
        }


def cedar_export(fleet: Fleet, at: datetime) -> CedarExport:
    return CedarExport(fleet, at)


def fleet_entities(fleet: Fleet) -> list[dict[str, Any]]:
    """Jurisdictions, sites (parents: their governing set) and models as Cedar entities."""
    entities: list[dict[str, Any]] = []
    for j in sorted(fleet.jurisdictions.values(), key=lambda j: j.id):
        entities.append(
            {
                "uid": _ref("Jurisdiction", j.id),
                "attrs": {
                    "models": [_entity_ref("Model", m) for m in sorted(j.models)],
                    "process_in": [_entity_ref("Jurisdiction", x) for x in sorted(j.process_in)],
                },
                "parents": [],
            }
        )
    for s in sorted(fleet.sites.values(), key=lambda s: s.id):
        entities.append(
            {
                "uid": _ref("Site", s.id),
                "attrs": {"owner": _entity_ref("Jurisdiction", s.jurisdiction)},
                "parents": [_ref("Jurisdiction", g) for g in sorted(s.governing)],
            }
        )
    for m in sorted(fleet.models.values(), key=lambda m: m.id):
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
    return entities


def person_entity(fleet: Fleet, principal: Principal, person_id: str) -> dict[str, Any]:
    """The ``Person`` entity for one principal (its home found the fleet's way)."""
    attrs: dict[str, Any] = {
        "residency": principal.residency,
        "nationalities": sorted(principal.nationalities),
        "nationality_known": bool(principal.nationalities),
        "groups": sorted(principal.groups),
    }
    home = fleet.home_of(principal.residency)
    if home is not None:
        attrs["home"] = _entity_ref("Jurisdiction", home)
    return {"uid": _ref("Person", person_id), "attrs": attrs, "parents": []}


def cedar_request(person_id: str, model: str, site: str) -> dict[str, Any]:
    """The request asking whether ``model`` may be served at ``site`` to that person."""
    return {
        "principal": _ref("Person", person_id),
        "action": _ref("Action", "serve"),
        "resource": _ref("Site", site),
        "context": {"model": _entity_ref("Model", model)},
    }
