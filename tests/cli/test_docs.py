"""The docs stand on their own: every relative link of README.md and docs/ resolves inside
the repository, and the CLI contract pages name every command."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.cli import app as cli_app

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_links_stay_inside_the_repository() -> None:
    broken = []
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text, page
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+://", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists() or REPO not in path.parents:
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []


def test_cli_md_names_every_command() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    assert [c for c in [*cli_app.COMMANDS, "version"] if f"sovereign {c}" not in text] == []
