"""Health reorders a route and nothing more; backoff doubles up to its cap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.gateway.health import HealthBook

SITES = ("a", "b", "c", "d", "e")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@given(
    route=st.lists(st.sampled_from(SITES), unique=True, max_size=5),
    failed=st.lists(st.sampled_from(SITES + ("outside",)), max_size=8),
)
def test_order_is_a_permutation_of_the_route(route: list[str], failed: list[str]) -> None:
    book = HealthBook(clock=Clock())
    for site in failed:
        book.record_failure(site, "boom")
    ordered = book.order(route)
    assert sorted(ordered) == sorted(route)  # never adds, never drops
    up = [s for s in route if s not in failed]
    assert list(ordered[: len(up)]) == up  # healthy first, in route order
    assert list(ordered[len(up) :]) == [s for s in route if s in failed]


def test_backoff_doubles_to_cap_and_success_clears() -> None:
    clock = Clock()
    book = HealthBook(base_backoff_s=1.0, max_backoff_s=5.0, clock=clock)
    assert [book.record_failure("a", "x") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert not book.is_up("a")
    clock.now += 5.0
    assert book.is_up("a")  # the down period is over: tried first again
    book.record_success("a")
    assert book.record_failure("a", "x") == 1.0
    assert book.snapshot(["a", "b"])["a"]["up"] is False
    assert book.snapshot(["a", "b"])["b"] == {
        "up": True,
        "consecutive_failures": 0,
        "last_error": None,
        "retry_in_s": 0.0,
    }
