"""The compiled table's per-entry memo (routes per class of principal) never changes an answer.

Each entry with suspensions builds its bit tables on first use and memoises the route per set
of matching suspensions, up to a cap. Answers must be the same warm or cold, with the memo on
or off, in any query order, and equal to the reference rules.
"""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.model import Fleet
from orchestrator.policy import entries, rules
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from tests.strategies import fleets, instants, principals

_Queries = list[tuple[str, Principal, datetime]]


@st.composite
def fleet_and_queries(draw: st.DrawFn) -> tuple[Fleet, _Queries]:
    fleet = draw(fleets(max_directives=6))
    models = sorted(fleet.models)
    queries = draw(
        st.lists(
            st.tuples(st.sampled_from(models), principals(), instants()), min_size=1, max_size=12
        )
    )
    return fleet, queries


@pytest.mark.slow  # 150 random fleets
@settings(max_examples=150, deadline=None)
@given(fleet_and_queries(), st.randoms(use_true_random=False))
def test_warm_answers_equal_cold_answers_and_the_rules(
    case: tuple[Fleet, _Queries], rng: random.Random
) -> None:
    fleet, queries = case
    warm = RouteTable.compile(fleet)
    first = [warm.route(m, p, at) for m, p, at in queries]
    again = [warm.route(m, p, at) for m, p, at in queries]  # every class memoised by now
    shuffled = list(enumerate(queries))
    rng.shuffle(shuffled)
    cold = RouteTable.compile(fleet)  # fresh memos, filled in another order
    reordered = {i: cold.route(m, p, at) for i, (m, p, at) in shuffled}
    for i, (m, p, at) in enumerate(queries):
        expected = rules.route(fleet, m, p, at)
        assert first[i] == again[i] == reordered[i] == expected


@settings(max_examples=100, deadline=None)
@given(fleet_and_queries())
def test_answers_equal_with_the_memo_off(case: tuple[Fleet, _Queries]) -> None:
    fleet, queries = case
    with_memo = RouteTable.compile(fleet)
    expected = [with_memo.route(m, p, at) for m, p, at in queries * 2]
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(entries, "MEMO_CAP", 0)  # nothing is ever stored
        without = RouteTable.compile(fleet)
        assert [without.route(m, p, at) for m, p, at in queries * 2] == expected
