"""Gaps and duplicates in decision ids: every missing number is in exactly one listed run."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.evidence.decisions import Gap, Sequences


def runs(missing: list[int], gateway: str) -> list[Gap]:
    out: list[Gap] = []
    for n in missing:
        if out and out[-1].last_missing == n - 1:
            out[-1] = Gap(gateway, out[-1].first_missing, n)
        else:
            out.append(Gap(gateway, n, n))
    return out


@pytest.mark.slow  # thousands of sequences, seconds
@settings(max_examples=60, deadline=None)
@given(
    st.sets(
        st.one_of(st.integers(1, 300), st.integers(65_000, 66_000), st.integers(1, 400_000)),
        min_size=1,
        max_size=300,
    )
)
def test_gaps_are_exactly_the_numbers_never_seen(seen: set[int]) -> None:
    seqs = Sequences()
    for n in sorted(seen, key=lambda n: (n * 7919) % 1009):  # any order
        assert seqs.add("gw", n)
    missing = [n for n in range(1, max(seen) + 1) if n not in seen]
    assert seqs.gaps() == runs(missing, "gw")
    first = next(iter(seen))
    assert not seqs.add("gw", first)  # a second time: a duplicate


def test_a_huge_number_costs_one_chunk_and_is_one_gap() -> None:
    seqs = Sequences()
    seqs.add("gw", 1)
    seqs.add("gw", 1 << 39)
    assert seqs.gaps() == [Gap("gw", 2, (1 << 39) - 1)]
