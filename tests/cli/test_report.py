"""``sovereign report --html`` opened in a real headless browser (Debian's chromium).

The page must load with no console message (no script error, nothing blocked), reference
nothing outside itself, and every cell must agree with ``explain --batch`` for the principal it
stands for: served here (first site of the route in the person's own jurisdiction), served
elsewhere, or refused (empty route).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from tests.cli.support import run_cli

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
REGIONS = REPO / "regions"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no chromium on PATH: `sudo .ci/setup test` installs it (Debian's chromium)")


def load_in_browser(page: Path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every console line the page produced."""
    with tempfile.TemporaryDirectory(prefix="sovereign-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom"]
            + [page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []
        self.body: dict[str, str] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if tag == "td" and "cell" in a.get("class", "").split():
            self.cells.append(a)
        for key in ("src", "href"):
            if key in a and not a[key].startswith("#"):
                self.external.append(a[key])
        if tag == "link":
            self.external.append(str(a))


def state_of(fleet: Fleet, answer: dict[str, object]) -> str:
    route = answer["route"]
    assert isinstance(route, list)
    if not route:
        return "refused"
    owner = fleet.sites[route[0]].jurisdiction
    return "here" if owner == answer["home"] else "elsewhere"


Answers = Callable[[Path, list[dict[str, str]], str, Path], list[str]]


@pytest.fixture
def batch_answers(capsys: pytest.CaptureFixture[str]) -> Answers:
    """``explain --batch`` for the principals of the given cells, as cell states."""

    def answers(fleet_dir: Path, cells: list[dict[str, str]], at: str, tmp: Path) -> list[str]:
        fleet = load_fleet(fleet_dir)
        batch = tmp / "queries.jsonl"
        batch.write_text(
            "".join(
                json.dumps(
                    {
                        "model": c["data-model"],
                        "residency": c["data-residency"],
                        "nationalities": json.loads(c["data-nationalities"]),
                        "groups": json.loads(c["data-groups"]),
                        "at": at,
                    }
                )
                + "\n"
                for c in cells
            )
        )
        code, out, err = run_cli(
            capsys, "explain", "--batch", str(batch), "--fleet", str(fleet_dir)
        )
        assert code == 0, err
        return [state_of(fleet, json.loads(line)) for line in out.splitlines()]

    return answers


def test_the_report_loads_cleanly_and_agrees_with_explain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], batch_answers: Answers
) -> None:
    page = tmp_path / "report.html"
    code, out, err = run_cli(
        capsys, "report", "--html", str(page), "--fleet", str(REGIONS), "--at", "2026-06-13"
    )
    assert code == 0, err
    assert str(page) in out
    dom, console = load_in_browser(page)
    assert console == []
    parsed = Cells()
    parsed.feed(dom)
    assert parsed.body.get("data-ready") == "yes"  # the inline script ran to its end
    assert parsed.external == []  # self-contained: nothing to fetch
    cells = parsed.cells
    fleet = load_fleet(REGIONS)
    assert {c["data-model"] for c in cells} == set(fleet.models)
    assert {c["data-state"] for c in cells} == {"here", "refused"} | (
        {"elsewhere"} & {c["data-state"] for c in cells}
    )
    states = batch_answers(REGIONS, cells, "2026-06-13T00:00:00Z", tmp_path)
    assert [c["data-state"] for c in cells] == states
    refused = [c for c in cells if c["data-state"] == "refused"]
    assert refused and all("data-before" not in c for c in cells)


def test_the_before_and_after_of_a_directive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], batch_answers: Answers
) -> None:
    without = tmp_path / "without"
    shutil.copytree(REGIONS, without)
    for f in (without / "directives").glob("us-doc-2026-06-26.yaml*"):
        f.unlink()
    page = tmp_path / "impact.html"
    amendment = REGIONS / "directives" / "us-doc-2026-06-26.yaml"
    at = "2026-06-27T00:00:00Z"
    code, _, err = run_cli(
        capsys,
        "report",
        "--html",
        str(page),
        "--fleet",
        str(without),
        "--at",
        at,
        "--directive",
        str(amendment),
    )
    assert code == 0, err
    dom, console = load_in_browser(page)
    assert console == []
    parsed = Cells()
    parsed.feed(dom)
    cells = parsed.cells
    assert [c["data-state"] for c in cells] == batch_answers(REGIONS, cells, at, tmp_path)
    assert [c["data-before"] for c in cells] == batch_answers(without, cells, at, tmp_path)
    changed = [c for c in cells if "changed" in c["class"].split()]
    assert changed and all(c["data-before"] == "refused" for c in changed)
    assert all(c["data-state"] != c["data-before"] for c in changed)
