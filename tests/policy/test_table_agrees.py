"""The compiled route table agrees with the reference rules on every sampled query."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.model import Fleet
from orchestrator.policy import rules
from orchestrator.policy.explain import Explainer, explain
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from tests.strategies import GRID, fleets, instants, principals

_TICK = timedelta(microseconds=1)


@settings(max_examples=200, deadline=None)
@given(fleets(), st.lists(st.tuples(principals(), instants()), min_size=1, max_size=8))
def test_table_agrees_with_reference(
    fleet: Fleet, queries: list[tuple[Principal, datetime]]
) -> None:
    table = RouteTable.compile(fleet)
    for principal, at in queries:
        for m in fleet.models:
            assert table.route(m, principal, at) == rules.route(fleet, m, principal, at)


@settings(max_examples=100, deadline=None)
@given(fleets(), principals())
def test_table_agrees_across_every_boundary(fleet: Fleet, principal: Principal) -> None:
    """Exactly at each directive instant, and just before it, the table picks the right epoch."""
    table = RouteTable.compile(fleet)
    for g in GRID:
        for at in (g - _TICK, g):
            for m in fleet.models:
                assert table.route(m, principal, at) == rules.route(fleet, m, principal, at)


@settings(max_examples=100, deadline=None)
@given(fleets(), st.lists(st.tuples(principals(), instants()), min_size=1, max_size=5))
def test_explainer_agrees_with_reference_explain(
    fleet: Fleet, queries: list[tuple[Principal, datetime]]
) -> None:
    explainer = Explainer(fleet)
    for principal, at in queries:
        for m in fleet.models:
            assert explainer.explain(m, principal, at) == explain(fleet, m, principal, at)
