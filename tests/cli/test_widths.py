"""Human output at 60, 80 and 200 columns never splits or cuts an identifier.

Every registered command is rendered: the ones below with a sample invocation that succeeds,
any other (a server, or a command added later) with ``--help``, checked for whatever it prints.
Output is piped (not a terminal), so the width comes from ``COLUMNS``, as docs/cli.md asks.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.cli.app import command_tree
from orchestrator.demo.workspace import Workspace, prepare_workspace
from orchestrator.fleet.loader import load_fleet
from orchestrator.layout import wrap_plain, wrap_words
from tests.cli.support import run_cli

REPO = Path(__file__).resolve().parents[2]
AT = "2026-06-13T00:00:00Z"
WIDTHS = (60, 80, 200)
HEX = re.compile(r"\b[0-9a-f]{16,}\b")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("widths")
    w = prepare_workspace(REPO / "regions", root / "ws")
    w.add_directive("us-doc-2026-06-12.yaml")
    yield w
    shutil.rmtree(root, ignore_errors=True)


def samples(w: Workspace) -> dict[str, list[list[str]]]:
    fleet = ["--fleet", str(w.fleet_dir)]
    local = [*fleet, "--sites", "local", "--at", AT]
    directive = str(w.fleet_dir / "directives" / "us-doc-2026-06-12.yaml")
    held_back = str(w.held_back / "us-doc-2026-06-26.yaml")
    return {
        "version": [[]],
        "validate": [fleet],
        "explain": [
            [*fleet, "-m", "fable-5", "-r", "DE", "-n", "US", "--at", AT],
            [*fleet, "-m", "fable-5", "-r", "US", "-n", "DE", "--at", AT],
        ],
        "impact": [[directive, *fleet, "--at", AT], [held_back, *fleet]],
        "plan": [local],
        "apply": [[*local, "--yes"]],
        "status": [local],
        "audit verify": [fleet],
        "audit log": [[*fleet, "--limit", "0"]],
        "directive verify": [[directive, *fleet]],
        # sorted after "apply": the state exists by then
        "drain": [[*fleet, "--site", "aws-us-east-1", "--reason", "maintenance CHG-1", "--yes"]],
        "restore": [[*fleet, "--site", "aws-us-east-1", "--yes"]],
        "state lock-info": [fleet],
        "report": [[*fleet, "--html", str(w.root / "report.html"), "--at", AT]],
        # sorted after "apply": the state and its audit log exist by then
        "evidence": [[*fleet, "-j", "US", "--from", "2026-01-01", "--to", "2100-01-01"]],
    }


def identifiers(w: Workspace) -> set[str]:
    fleet = load_fleet(w.fleet_dir)
    ids = set(fleet.sites) | set(fleet.models) | set(fleet.directives) | set(fleet.jurisdictions)
    ids |= {s.operator for s in fleet.sites.values()}
    ids |= {a.id for j in fleet.jurisdictions.values() for a in j.authorities}
    ids |= {str(w.fleet_dir), "us-doc-2026-06-26"}
    return {i for i in ids if len(i) >= 4}


def problems(text: str, width: int, ids: set[str]) -> list[str]:
    found = []
    if "…" in text:
        found.append("an ellipsis: something was cut short")
    for n, line in enumerate(text.splitlines(), start=1):
        # A line wider than the console is allowed only for one word that is wider itself.
        if len(line) > width and " " in line.rstrip()[width:]:
            found.append(f"line {n} is {len(line)} wide and could have wrapped: {line!r}")
        for raw in re.findall(r"[\w./:-]+", line):
            token = raw.rstrip(".:,")
            cut = [i for i in ids if i != token and i.startswith(token) and len(token) >= 4]
            if cut and token not in ids and not any(token.startswith(i) for i in ids):
                found.append(f"line {n}: {token!r} is the start of {cut[0]!r}: {line!r}")
        for h in HEX.findall(line):
            if len(h) not in (64, 40):
                found.append(f"line {n}: a hash cut to {len(h)} hex digits: {h}")
    return found


def command_paths() -> list[str]:
    def leaves(group: object, path: tuple[str, ...] = ()) -> Iterator[str]:
        commands = getattr(group, "commands", None)
        if commands is None:
            yield " ".join(path)
            return
        for name, sub in sorted(commands.items()):
            yield from leaves(sub, (*path, name))

    return list(leaves(command_tree()))


# The demo is rendered once below (it takes a few seconds).
NOT_LAID_OUT = {"demo"}


@pytest.mark.parametrize("width", WIDTHS)
def test_every_command_fits_without_splitting_an_identifier(
    ws: Workspace,
    width: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    ids = identifiers(ws)
    table = samples(ws)
    checked = 0
    for path in command_paths():
        if path in NOT_LAID_OUT:
            continue
        # A command without a sample (added later) shows its --help: never run something that
        # may serve forever (gateway, controller) without knowing its arguments.
        runs = table.get(path, [["--help"]])
        for args in runs:
            code, out, err = run_cli(capsys, *path.split(), *args)
            if path in table:
                assert code == 0, f"sovereign {path} {' '.join(args)}: {err}"
                assert out.strip(), f"sovereign {path} printed no result on stdout"
                checked += 1
            if path not in table:
                # Typer draws --help screens (and crops long option help on narrow terminals);
                # only a command's own output is held to the rule here.
                assert code == 0, f"sovereign {path} --help: {err}"
                continue
            found = problems(out + err, width, ids)
            assert not found, (
                f"sovereign {path} {' '.join(args)} at {width} columns:\n" + "\n".join(found)
            )
    assert checked >= sum(len(v) for v in table.values())


@pytest.mark.slow  # runs the whole demo
@pytest.mark.parametrize("width", (60, 80))
def test_the_demo_reads_cleanly(
    width: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, err = run_cli(capsys, "demo", "--workspace", str(tmp_path / "demo"))
    assert code == 0, err
    fleet = load_fleet(tmp_path / "demo" / "regions")
    ids = {i for i in {*fleet.sites, *fleet.models, *fleet.directives} if len(i) >= 4}
    assert problems(out, width, ids) == []
    assert "Routing on 2026-06-13" in out


def test_wrap_words_never_divides_a_word() -> None:
    from rich.text import Text

    words = ["aws-ap-northeast-1", "->", "gcp-asia-northeast1", "x" * 70, "451"]
    text = Text(" ".join(words * 3))
    for width in (10, 20, 40, 60):
        lines = [line.plain for line in wrap_words(text, width)]
        assert [w for line in lines for w in line.split()] == words * 3
        assert all(len(line) <= width or " " not in line.strip() for line in lines)


@given(
    st.text(alphabet=st.sampled_from("ab- \n"), max_size=120),
    st.integers(min_value=1, max_value=40),
)
def test_plain_wrapping_gives_the_same_lines_as_rich_wrapping(text: str, width: int) -> None:
    """`validate` prints its summary through wrap_plain (no rich): the lines must be those
    that `say` prints through rich, for any text and width."""
    from rich.text import Text

    assert wrap_plain(text, width) == [line.plain for line in wrap_words(Text(text), width)]


def test_the_check_sees_a_split_a_cut_and_an_overlong_line() -> None:
    ids = {"aws-ap-northeast-1", "us-doc-2026-06-12"}
    assert problems("│ aws-ap-northeast-  │\n│ 1 │", 80, ids)
    assert problems("route: aws-ap-northe…", 80, ids)
    assert problems("head " + "a" * 63, 80, ids)
    assert problems("word " * 20, 60, ids)
    assert problems("aws-ap-northeast-1 -> us-doc-2026-06-12 " + "b" * 64, 60, ids) == []
