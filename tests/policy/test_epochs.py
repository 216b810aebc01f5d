"""The epoch index (``policy.epochs``), the one definition of "in force", against SPEC 2's text.

The oracle below is the sentence of SPEC 2 written as code, directive by directive, with no
intervals and no index: the index and everything fed from it (table, explain, desired state,
DNS, impact) must agree with it at every instant, at and around every directive instant.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.model import Directive, Fleet
from orchestrator.policy.epochs import EARLIEST, LATEST, EpochIndex, in_force
from tests.strategies import GRID, fleets, instants

_TICK = timedelta(microseconds=1)


def spec_in_force(fleet: Fleet, at: datetime) -> tuple[Directive, ...]:
    """SPEC 2: in force when effective <= t < expires (no expires: open-ended) and no directive
    that supersedes it has effective <= t (a replacement stays one after it expires)."""

    def replaced(d: Directive) -> bool:
        return any(r.supersedes == d.id and r.effective <= at for r in fleet.directives.values())

    return tuple(
        sorted(
            (
                d
                for d in fleet.directives.values()
                if d.effective <= at and (d.expires is None or at < d.expires) and not replaced(d)
            ),
            key=lambda d: d.id,
        )
    )


@settings(max_examples=200, deadline=None)
@given(fleets(max_directives=6), st.lists(instants(), min_size=1, max_size=10))
def test_in_force_is_the_spec_sentence(fleet: Fleet, ats: list[datetime]) -> None:
    index = EpochIndex(fleet)
    for at in ats:
        assert index.in_force(at) == spec_in_force(fleet, at)
        assert in_force(fleet, at) == spec_in_force(fleet, at)


@settings(max_examples=150, deadline=None)
@given(fleets(max_directives=6))
def test_the_set_in_force_changes_only_at_an_instant_and_is_constant_between(
    fleet: Fleet,
) -> None:
    index = EpochIndex(fleet)
    assert list(index.instants) == sorted(set(index.instants))
    for g in GRID:
        for at in (g - _TICK, g, g + _TICK):
            start, end = index.window(at)
            assert start <= at < end
            assert index.epoch(start) == index.epoch(at)
            # the whole window answers alike: its first and last instants, and at
            expected = spec_in_force(fleet, at)
            assert spec_in_force(fleet, start if start != EARLIEST else at) == expected
            assert spec_in_force(fleet, end - _TICK if end != LATEST else at) == expected
    changes = [t for t in GRID if spec_in_force(fleet, t) != spec_in_force(fleet, t - _TICK)]
    assert set(changes) <= set(index.instants)


@settings(max_examples=100, deadline=None)
@given(fleets(max_directives=6), st.lists(instants(), min_size=1, max_size=20))
def test_the_memo_returns_the_same_answers_in_any_order(fleet: Fleet, ats: list[datetime]) -> None:
    index = EpochIndex(fleet)
    first = [index.in_force(at) for at in ats]
    again = [index.in_force(at) for at in reversed(ats)]
    assert first == list(reversed(again))
