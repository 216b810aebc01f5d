"""policy.coverage: every cell is what ``explain`` says for the principal it stands for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.fleet.loader import load_fleet
from orchestrator.policy.coverage import CellState, coverage
from orchestrator.policy.explain import explain

REGIONS = Path(__file__).resolve().parents[2] / "regions"


def test_every_cell_agrees_with_explain_and_rows_cover_every_country() -> None:
    fleet = load_fleet(REGIONS)
    at = datetime(2026, 6, 13, tzinfo=UTC)
    cov = coverage(fleet, at)
    assert set(cov.models) == set(fleet.models)
    for model, rows in cov.models.items():
        assert sorted(c for r in rows for c in r.countries) == sorted(fleet.country_home)
        for row in rows:
            assert len(row.cells) == len(cov.audiences)
            for country in row.countries:  # merged countries really are alike
                for cell in row.cells:
                    p = cell.example
                    e = explain(fleet, model, type(p)(country, p.nationalities, p.groups), at)
                    if not e.route:
                        assert cell.state is CellState.REFUSED
                        assert cell.directives or cell.rules
                    else:
                        owner = fleet.sites[e.route[0]].jurisdiction
                        home = cell.state is CellState.HERE
                        assert home == (owner == e.home)


def test_the_june_directive_refuses_foreigners_in_the_us_and_names_itself() -> None:
    fleet = load_fleet(REGIONS)
    cov = coverage(fleet, datetime(2026, 6, 13, tzinfo=UTC))
    us = next(r for r in cov.models["fable-5"] if r.jurisdiction == "US")
    by_label = dict(zip((a.label for a in cov.audiences), us.cells, strict=True))
    assert by_label["US national"].state is CellState.HERE
    other = by_label["other nationality"]
    assert other.state is CellState.REFUSED and other.directives == ("us-doc-2026-06-12",)
