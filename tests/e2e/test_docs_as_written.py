"""The runbook works on the first try: README.md, docs/gateway.md, docs/runbooks.md,
docs/gitops.md, docs/identity.md and docs/evidence.md are run as written, without a terminal,
on a scratch copy of the repository.

The convention every page in ``PAGES`` follows (each page repeats it in a comment at its top):

- A fenced block tagged ``sh`` is run as it stands; a ``console`` block is a terminal
  transcript whose ``$ `` lines (with their ``\\`` continuations) are run, the rest being the
  output it shows. Every other block (``text``, ``yaml``, ``python``, ``json``, ``markdown``,
  untagged) is read, not run.
- The blocks run in page order, in one ``bash`` per page (variables and background jobs carry
  over from block to block), from the root of a fresh copy of the repository (its
  ``regions/``), with ``sovereign`` on PATH, stdin not a terminal (so every command that
  changes something needs ``--yes``), ``set -e``: a failing command fails the page.
- A command that is meant to fail says so at the end of its line: ``# exits 1`` (any code);
  the test checks that code.
- A block that cannot run on a laptop as written (a cloud account, a placeholder, the test
  suite itself) is preceded by ``<!-- docs-test: skip: REASON -->``. Placeholders are written
  in capitals (``NAME.yaml``, ``FILE``, ``ID``) and appear only in such blocks and in prose.
- ``8080`` is the one port the pages use; the test replaces it with a free port. Background
  jobs (``&``) are stopped when the page ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PAGES = [
    "README.md",
    "docs/gateway.md",
    "docs/runbooks.md",
    "docs/gitops.md",
    "docs/identity.md",
    "docs/evidence.md",
]
CONVENTION = "docs-test:"  # the marker comment every page carries at its top
FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b")
EXITS = re.compile(r"\s+#\s*exits\s+(\d+)\b.*$")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    tag: str
    body: list[str]
    skipped: bool


def blocks(text: str) -> list[Block]:
    """Every fenced block of a page, with its tag and whether a skip comment precedes it."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        found.append(Block(start + 1, opened.group(1), body, bool(SKIP.search(before))))
        i += 1
    return found


def logical_lines(lines: list[str]) -> list[str]:
    """Lines joined across trailing backslashes."""
    out: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def commands(block: Block) -> list[str]:
    """The shell text a runnable block contributes, one logical line at a time."""
    if block.tag == "sh":
        return logical_lines(block.body)
    prompts: list[str] = []
    continuing = False
    for line in block.body:
        if line.startswith("$ ") or continuing:
            prompts.append(line[2:] if line.startswith("$ ") and not continuing else line)
            continuing = line.rstrip().endswith("\\")
    return logical_lines(prompts)


def script(page: str, text: str, port: int) -> str:
    """The page as one bash script: each command announced on stderr, expected exits checked."""
    out = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for block in blocks(text):
        if block.skipped or block.tag not in ("sh", "console"):
            continue
        for written in commands(block):
            line = written.replace("8080", str(port))
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{page}:{block.line}"
            out.append(f"echo {shell_quote(f'--- {where}: {line.strip()}')} >&2")
            expected = EXITS.search(line)
            if expected is None:
                out.append(line)
                continue
            code = expected.group(1)
            command = line[: expected.start()]
            complaint = shell_quote(f"{where}: expected exit {code}, got")
            out.append(
                f"set +e; {command}; rc=$?; set -e; [ $rc -eq {code} ] || "
                f'{{ echo {complaint} "$rc" >&2; exit 1; }}'
            )
    return "\n".join(out) + "\n"


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scratch_copy(root: Path) -> Path:
    """The repository as a fresh clone would have it: tracked files only, no state."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO / name.decode()
        if source.is_file():
            target = root / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return root


def test_every_page_says_it_is_run_and_how() -> None:
    for page in PAGES:
        head = (REPO / page).read_text().splitlines()[:12]
        assert any(CONVENTION in line for line in head), f"{page}: no docs-test comment at its top"


def test_the_parser_follows_the_convention() -> None:
    text = "\n".join(
        [
            "<!-- docs-test: skip: a placeholder -->",
            "```sh",
            "sovereign directive sign FILE",
            "```",
            "```console",
            "$ sovereign drain --site s \\",
            '    --reason "r" --yes',
            "Drain s (...)",
            "$ sovereign evacuate --jurisdiction EU --reason r --yes   # exits 1: refused",
            "```",
            "```text",
            "sovereign controller --state s3://b/prod",
            "```",
        ]
    )
    found = blocks(text)
    tags = [(b.tag, b.skipped) for b in found]
    assert tags == [("sh", True), ("console", False), ("text", False)]
    assert commands(found[1]) == [
        'sovereign drain --site s      --reason "r" --yes',
        "sovereign evacuate --jurisdiction EU --reason r --yes   # exits 1: refused",
    ]
    ran = script("x.md", text, 1)
    assert "directive sign" not in ran and "controller" not in ran
    assert "[ $rc -eq 1 ]" in ran


@pytest.mark.parametrize("page", PAGES)
def test_the_page_runs_as_written(page: str, tmp_path: Path) -> None:
    root = scratch_copy(tmp_path / "clone")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `sovereign` is this checkout's code (not the copy's), as `pip install -e .` puts it on PATH.
    entry = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "from orchestrator.cli.app import main; main()"
    )
    (bin_dir / "sovereign").write_text(
        f'#!/bin/sh\nexec {shell_quote(sys.executable)} -c {shell_quote(entry)} "$@"\n'
    )
    (bin_dir / "sovereign").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "80"
    text = (REPO / page).read_text()
    process = subprocess.Popen(
        ["bash", "-c", script(page, text, free_port())],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        transcript, _ = process.communicate(timeout=600)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, transcript[-6000:]
