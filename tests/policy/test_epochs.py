"""The epoch index (``policy.epochs``), the one definition of "in force", against
docs/decisions.md's text.

The oracle below is the sentence of docs/decisions.md ("In force") written as code, directive by
directive, with no intervals and no index: the index and everything fed from it (table, explain,
desired state, DNS, impact) must agree with it at every instant, at and around every directive
instant.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.model import Directive, Fleet
from orchestrator.policy.clock import instants_within
from orchestrator.policy.epochs import EARLIEST, LATEST, EpochIndex, in_force
from tests.strategies import GRID, fleets, instants

_TICK = timedelta(microseconds=1)


def spec_in_force(fleet: Fleet, at: datetime) -> tuple[Directive, ...]:
    """docs/decisions.md: in force when effective <= t < expires (no expires: open-ended) and no
    directive that supersedes it has effective <= t (a replacement stays one after it expires)."""

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


@settings(max_examples=150, deadline=None)
@given(fleets(max_directives=6), instants(), st.sampled_from([1, 3600, 3 * 86400]))
def test_the_skew_window_instants_see_every_state_the_window_spans(
    fleet: Fleet, at: datetime, skew_seconds: int
) -> None:
    """``clock.instants_within``: every instant of the window is in force as at the last
    listed instant not after it, so judging at the listed instants misses no state."""
    skew = timedelta(seconds=skew_seconds)
    listed = instants_within(fleet, at, skew)
    assert listed[0] == at - skew and list(listed) == sorted(set(listed))
    assert all(at - skew <= t <= at + skew for t in listed)
    probes = {at - skew, at, at + skew} | {
        t + d
        for t in GRID
        for d in (-_TICK, timedelta(0), _TICK)
        if at - skew <= t + d <= at + skew
    }
    for t in probes:
        last = max(x for x in listed if x <= t)
        assert spec_in_force(fleet, t) == spec_in_force(fleet, last)
