"""Fleet YAML, directive and signature files: damage never crashes, never shrinks the fleet.

Every input is written as real files into a fresh directory and loaded through the fleet's
file-reading layer (``load_fleet``: ``fleet.reading`` then the parser), as ``validate`` and
``apply`` read it; now and then an entry is not a regular file at all (a FIFO, a dangling or
an escaping symlink, a directory), which must be refused naming it, never waited on or
skipped. Reuses the damage strategies of tests/fleet/test_fuzz.py. Each input is either a
valid fleet or a FleetError whose every problem names a file of the fleet, a line (or none)
and a message; and a fleet that loads holds one jurisdiction per profile file and one
directive per directive file it was given: no input makes the fleet smaller than its readable
files (a directive that cannot be read is an error, never one that silently is not there).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import FleetError
from orchestrator.fleet.loader import load_fleet
from tests.fleet.test_fuzz import BASE, NAMES, damaged
from tests.fuzz.conftest import budget, count

SETTINGS_FILES = {"models.yaml", "fleet.yaml"}


ENTRY_KINDS = ["fifo", "dangling symlink", "symlink out of the fleet", "directory"]


def _write(root: Path, files: dict[str, bytes], odd: dict[str, str]) -> None:
    (root / "directives").mkdir(parents=True)
    for rel, data in files.items():
        path = root / rel
        kind = odd.get(rel)
        if kind is None:
            path.write_bytes(data)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dangling symlink":
            path.symlink_to(root / "nowhere.yaml")
        elif kind == "symlink out of the fleet":
            outside = root.parent / f"outside-{path.name}"
            outside.write_bytes(data)
            path.symlink_to(outside)
        else:
            path.mkdir()


def check_fleet(files: dict[str, bytes], target: str, odd: dict[str, str] | None = None) -> None:
    odd = {rel: kind for rel, kind in (odd or {}).items() if rel in files}
    with tempfile.TemporaryDirectory(prefix="fuzz-fleet-") as tmp:
        root = Path(tmp) / "regions"
        _write(root, files, odd)
        try:
            fleet = load_fleet(root)
        except FleetError as exc:
            assert exc.problems and exc.exit_code == 1
            for p in exc.problems:
                assert p.file.startswith(str(root)), p
                assert p.line is None or p.line >= 1, p
                assert p.message and p.render()
                assert p.to_json()["file"] == p.file
            named = {p.file for p in exc.problems}
            for rel in odd:  # every entry that is not a file is named, none is skipped
                assert f"{root}/{rel}" in named, (rel, odd[rel], sorted(named))
            count(target, "refused (FleetError, exit 1)" + (" naming the odd entry" if odd else ""))
            return
    assert not odd, f"a fleet with {odd} loaded"
    directive_files = [r for r in files if r.startswith("directives/") and r.endswith(".yaml")]
    profiles = [r for r in files if "/" not in r and r.endswith(".yaml")]
    assert len(fleet.directives) == len(directive_files), sorted(fleet.directives)
    assert len(fleet.jurisdictions) == len([r for r in profiles if r not in SETTINGS_FILES])
    count(target, "valid fleet, nothing lost")


@budget()
@given(
    files=damaged(),
    odd=st.just({})
    | st.dictionaries(st.sampled_from(NAMES), st.sampled_from(ENTRY_KINDS), max_size=1),
)
def test_damaged_fleet_yaml(files: dict[str, bytes], odd: dict[str, str]) -> None:
    check_fleet(files, "fleet YAML (damaged files, through the file layer)", odd)


DIRECTIVE_NAMES = [n for n in NAMES if n.startswith("directives/")]


@budget()
@given(
    rel=st.sampled_from(DIRECTIVE_NAMES),
    content=st.one_of(
        st.binary(max_size=400),
        st.text(max_size=400).map(str.encode),
        st.sampled_from(DIRECTIVE_NAMES).map(lambda n: BASE[n] + b"\n"),
    ),
    extra=st.booleans(),
)
def test_directive_and_signature_files(rel: str, content: bytes, extra: bool) -> None:
    files = dict(BASE)
    if extra:  # a new directive or .sig beside the others
        files[rel.replace(".yaml", "-x.yaml")] = content
    else:
        files[rel] = content
    check_fleet(files, "directive and signature files (through the file layer)")
