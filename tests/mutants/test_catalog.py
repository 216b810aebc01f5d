"""The mutant catalog stays true to the code (the mutants themselves run in ``make mutants``)."""

from __future__ import annotations

from pathlib import Path

from tests.mutants.catalog import MUTANTS
from tests.mutants.run import check_snippets

REPO = Path(__file__).resolve().parents[2]


def test_every_mutant_snippet_occurs_exactly_once() -> None:
    assert check_snippets(REPO) == []


def test_every_mutant_names_tests_that_exist_and_a_campaign_or_why_not() -> None:
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    for m in MUTANTS:
        assert m.original != m.replacement and m.suite, m.id
        assert m.campaign or m.no_campaign, m.id
        for test in (*m.suite, *m.campaign):
            assert (REPO / test.split("::")[0]).is_file(), (m.id, test)
