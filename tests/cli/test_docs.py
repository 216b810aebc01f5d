"""The docs stand on their own: every relative link of README.md and docs/ resolves inside
the repository, and docs/cli.md's command table names every command of the app and no other."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

from orchestrator.cli.app import command_tree

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


def _documented_commands() -> set[str]:
    """The command paths docs/cli.md's command table names (`sovereign audit verify ...` /
    `audit log`): each backquoted span's leading words, up to the first option or argument."""
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    found: set[str] = set()
    for row in table.splitlines():
        if not row.startswith("| `"):
            continue
        first_cell = row.split(" | ", 1)[0]
        for span in re.findall(r"`([^`]+)`", first_cell):
            words = span.split()
            if words[:1] == ["sovereign"]:
                words = words[1:]
            path = list(itertools.takewhile(lambda w: re.fullmatch(r"[a-z][a-z-]*", w), words))
            if path:
                found.add(" ".join(path))
    return found


def _leaves(group: object, path: tuple[str, ...] = ()) -> Iterator[str]:
    commands = getattr(group, "commands", None)
    if commands is None:
        yield " ".join(path)
        return
    for name, sub in commands.items():
        yield from _leaves(sub, (*path, name))


def test_cli_md_lists_every_command_and_no_other() -> None:
    # One line of docs per command, checked against the app rather than copied beside it.
    assert _documented_commands() == set(_leaves(command_tree())), "docs/cli.md, ## Commands"
