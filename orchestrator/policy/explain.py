"""Why a principal is (not) served a model at each site: the ``explain`` answer (docs/decisions.md,
"sovereign explain").

``explain`` states the decision for every site of the fleet with every failing rule, built on
the reference rules (``rules.decide``), plus the route. A drained site (docs/runbooks.md) keeps its
legal decision, is marked ``"drained": true`` and is left out of the route. ``Explainer`` gives the
same answers for many queries in a row (``explain --batch``): the route comes from the compiled
table, the static rules R0-R3 are computed once per (model, home, site), and only the directives
in force at the query's instant (from the table's epoch index, memoised per epoch and model) are
checked per query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from orchestrator.errors import UsageError
from orchestrator.fleet.checks import valid_names
from orchestrator.fleet.model import Action, Directive, Fleet
from orchestrator.policy.epochs import in_force
from orchestrator.policy.principal import Principal
from orchestrator.policy.rules import (
    ALLOWED,
    Decision,
    Reason,
    Rule,
    audience_matches,
    decide,
    order_route,
    route_without,
    suspended_reason,
    withdrawn_reason,
)
from orchestrator.policy.table import RouteTable


@dataclass(frozen=True, slots=True)
class Explanation:
    """The decision for every site (sorted by id) and the route, for one query."""

    model: str
    principal: Principal
    at: datetime
    home: str | None
    route: tuple[str, ...]
    sites: Mapping[str, Decision]
    drained: frozenset[str] = frozenset()
    legal_route: tuple[str, ...] = ()  # the route the law gives, drained sites included

    @property
    def unavailable(self) -> tuple[str, ...]:
        """The drained sites, in route order, when the route is empty only by drains (the law
        allows them, operations took them out): an outage, not the law (docs/gateway.md,
        "Drained routes"). Empty when the principal is served or the law refuses."""
        if self.route:
            return ()
        return tuple(s for s in self.legal_route if s in self.drained)

    @property
    def refusal(self) -> Refusal | None:
        """Why the law leaves the route empty (``refusal_of``); None when served, or when the
        route is empty only by drains (``unavailable``)."""
        if self.route or self.legal_route:
            return None
        return refusal_of(self.sites)

    def to_json(self) -> dict[str, object]:
        """Exactly the ``explain --json`` shape of docs/json.md (``"drained": true`` on drained
        sites; ``refused_by`` when the law leaves the route empty)."""
        sites: dict[str, object] = {}
        for s, d in self.sites.items():
            entry = d.to_json()
            if s in self.drained:
                entry["drained"] = True
            sites[s] = entry
        out: dict[str, object] = {
            "model": self.model,
            "principal": self.principal.to_json(),
            "home": self.home,
            "route": list(self.route),
            "sites": sites,
        }
        refusal = self.refusal
        if refusal is not None:
            out["refused_by"] = refusal.to_json()
        return out


@dataclass(frozen=True, slots=True)
class Refusal:
    """What stands between a principal and every site, for an empty legal route: the
    directives, when some site is closed by directives alone (without them it would serve);
    else the rules that close the sites (R0-R3: no directive could open them)."""

    directives: tuple[str, ...]
    rules: tuple[Rule, ...]

    def to_json(self) -> dict[str, list[str]]:
        return {"directives": list(self.directives), "rules": [r.value for r in self.rules]}


_BY_DIRECTIVE = frozenset({Rule.DIRECTIVE, Rule.WITHDRAWN})


def refusal_of(sites: Mapping[str, Decision]) -> Refusal:
    """Why nobody serves (docs/decisions.md, "sovereign explain"), from the decision at every
    site: the one definition behind ``explain``'s ``refused_by`` and the HTML report's cells.
    A directive is named only where it alone closes a site, so a directive that reaches people
    the law refuses anyway is never blamed for them (``impact`` counts them unchanged)."""
    directives: set[str] = set()
    rules: set[Rule] = set()
    for decision in sites.values():
        kinds = {r.rule for r in decision.reasons}
        if kinds and kinds <= _BY_DIRECTIVE:
            directives.update(r.ref for r in decision.reasons)
        rules.update(k for k in kinds if k not in _BY_DIRECTIVE)
    if directives:
        return Refusal(tuple(sorted(directives)), ())
    order = list(Rule)
    return Refusal((), tuple(sorted(rules, key=order.index)))


def check_model(fleet: Fleet, model_id: str) -> None:
    """Refuse an unknown model with the list of valid ones."""
    if model_id not in fleet.models:
        raise UsageError(
            f"unknown model {model_id!r}",
            hint=valid_names(fleet.models, "valid models", near=model_id),
        )


def explain(
    fleet: Fleet,
    model_id: str,
    principal: Principal,
    at: datetime,
    drained: frozenset[str] = frozenset(),
) -> Explanation:
    """The reference explanation: ``rules.decide`` for every site, and the route without the
    ``drained`` sites."""
    check_model(fleet, model_id)
    active = in_force(fleet, at)
    decisions = {s: decide(fleet, model_id, s, principal, at, active) for s in sorted(fleet.sites)}
    home = fleet.home_of(principal.residency)
    route = order_route(fleet, (s for s, d in decisions.items() if d.allowed), home)
    return Explanation(
        model_id,
        principal,
        at,
        home,
        route_without(route, drained),
        MappingProxyType(decisions),
        drained & frozenset(fleet.sites),
        route,
    )


class Explainer:
    """Many explanations against one fleet; each equals ``explain`` for the same query."""

    def __init__(
        self,
        fleet: Fleet,
        table: RouteTable | None = None,
        drained: frozenset[str] = frozenset(),
    ) -> None:
        self.fleet = fleet
        self.drained = drained & frozenset(fleet.sites)
        if table is None or table.fleet is not fleet:
            table = RouteTable.compile(fleet)  # a table of another fleet would answer wrongly
        self.table = table
        self._sites = tuple(sorted(fleet.sites))
        self._static: dict[tuple[str, str | None], tuple[tuple[Reason, ...], ...]] = {}
        self._active: dict[int, dict[str, tuple[Directive, ...]]] = {}

    def explain(self, model_id: str, principal: Principal, at: datetime) -> Explanation:
        check_model(self.fleet, model_id)
        fleet = self.fleet
        home = fleet.home_of(principal.residency)
        static = self._static_reasons(model_id, principal)
        directives = self._in_force_for(model_id, at)
        decisions: dict[str, Decision] = {}
        for site_id, fixed in zip(self._sites, static, strict=True):
            governing = fleet.sites[site_id].governing
            dynamic: list[Reason] = []
            reached = [d for d in directives if d.jurisdiction in governing]
            for d in reached:
                if d.action is Action.WITHDRAW:
                    dynamic.append(withdrawn_reason(d))
            for d in reached:
                if d.action is Action.SUSPEND and audience_matches(d.audience, principal):
                    dynamic.append(suspended_reason(d))
            reasons = (*fixed, *dynamic) if dynamic else fixed
            decisions[site_id] = Decision(reasons) if reasons else ALLOWED
        legal = self.table.route(model_id, principal, at)
        route = route_without(legal, self.drained)
        return Explanation(
            model_id, principal, at, home, route, MappingProxyType(decisions), self.drained, legal
        )

    def _static_reasons(
        self, model_id: str, principal: Principal
    ) -> tuple[tuple[Reason, ...], ...]:
        """R0-R3 reasons per site; they depend on the model and the home only."""
        home = self.fleet.home_of(principal.residency)
        key = (model_id, home)
        cached = self._static.get(key)
        if cached is None:
            # R0's message names the residency, so unlisted principals are not cached
            cached = tuple(
                tuple(
                    r
                    for r in self._reference(model_id, s, principal).reasons
                    if r.rule not in (Rule.WITHDRAWN, Rule.DIRECTIVE)
                )
                for s in self._sites
            )
            if home is not None:
                self._static[key] = cached
        return cached

    def _reference(self, model_id: str, site_id: str, principal: Principal) -> Decision:
        # No directives: only the static rules can fail.
        return decide(self.fleet, model_id, site_id, principal, _EPOCH, ())

    def _in_force_for(self, model_id: str, at: datetime) -> tuple[Directive, ...]:
        """Directives in force at ``at`` that name ``model_id``, sorted by id (the order
        ``rules.decide`` reports them in)."""
        epochs = self.table.epochs
        epoch = epochs.epoch(at)
        per_model = self._active.get(epoch)
        if per_model is None:
            per_model = {}
            self._active[epoch] = per_model
        found = per_model.get(model_id)
        if found is None:
            found = tuple(d for d in epochs.in_force(at) if d.names(model_id))
            per_model[model_id] = found
        return found


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
