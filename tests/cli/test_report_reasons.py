"""The HTML report's reasons are explain's: every cell of the example fleet, at three instants
(before the June directives, under the first, under the amendment), agrees with ``explain
--batch`` for the principal it stands for: its state, and for a refusal the directives or
rules that ``refused_by`` names (one function, ``policy.explain.refusal_of``). No browser:
the page is parsed as written (tests/cli/test_report.py loads it in chromium)."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchestrator.fleet.loader import load_fleet
from tests.cli.support import run_cli

REPO = Path(__file__).resolve().parents[2]
INSTANTS = ("2026-06-11T00:00:00Z", "2026-06-13T00:00:00Z", "2026-06-27T00:00:00Z")


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "td" and "cell" in a.get("class", "").split():
            self.cells.append(a)


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy: no state beside it, so neither command reads drains."""
    root = tmp_path_factory.mktemp("report-reasons")
    shutil.copytree(REPO / "regions", root / "regions")
    return root / "regions"


@pytest.mark.parametrize("at", INSTANTS)
def test_every_cell_gives_explains_reasons(
    fleet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], at: str
) -> None:
    page = tmp_path / "who.html"
    code, _, err = run_cli(
        capsys, "report", "--fleet", str(fleet_dir), "--html", str(page), "--at", at
    )
    assert code == 0, err
    parser = Cells()
    parser.feed(page.read_text())
    cells = parser.cells
    assert len(cells) > 100
    queries = [
        {
            "model": c["data-model"],
            "residency": c["data-residency"],
            "nationalities": json.loads(c["data-nationalities"]),
            "groups": json.loads(c["data-groups"]),
            "at": at,
        }
        for c in cells
    ]
    batch = tmp_path / "cells.jsonl"
    batch.write_text("".join(json.dumps(q) + "\n" for q in queries))
    code, out, err = run_cli(capsys, "explain", "--fleet", str(fleet_dir), "--batch", str(batch))
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert len(answers) == len(cells)
    fleet = load_fleet(fleet_dir)
    refused_cells = 0
    for cell, answer in zip(cells, answers, strict=True):
        where = f"{cell['data-model']} {cell['data-residency']} {cell['data-nationalities']}"
        route = answer["route"]
        if not route:
            refused_cells += 1
            assert cell["data-state"] == "refused", where
            assert json.loads(cell["data-refused-by"]) == answer["refused_by"], where
            continue
        owner = fleet.sites[route[0]].jurisdiction
        assert cell["data-state"] == ("here" if owner == answer["home"] else "elsewhere"), where
        assert "data-refused-by" not in cell and "refused_by" not in answer, where
    assert refused_cells > 0


def test_a_directive_is_never_blamed_for_people_the_law_refuses_anyway(
    fleet_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fable-5 for a resident of India: refused by the rules whatever the nationality (the US
    directive reaches the unknown nationality too, but closes no site that would serve)."""
    answers = []
    for nationality in ([], ["US"], ["DE"]):
        args = ["--nationality", nationality[0]] if nationality else []
        code, out, err = run_cli(
            capsys, "explain", "--fleet", str(fleet_dir), "--model", "fable-5",
            "--residency", "IN", *args, "--at", INSTANTS[2], "--json",
        )  # fmt: skip
        assert code == 0, err
        answers.append(json.loads(out)["refused_by"])
    assert all(a == answers[0] for a in answers) and answers[0]["directives"] == []
