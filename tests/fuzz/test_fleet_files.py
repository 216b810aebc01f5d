"""Fleet YAML, directive and signature files: damage never crashes, never shrinks the fleet.

Reuses the damage strategies of tests/fleet/test_fuzz.py. Each input is either a valid fleet
or a FleetError whose every problem names a file of the fleet, a line (or none) and a message;
and a fleet that loads holds one jurisdiction per profile file and one directive per directive
file it was given: no input makes the fleet smaller than its readable files (a directive that
cannot be read is an error, never a directive that silently is not there).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import FleetError
from orchestrator.fleet.loader import load_fleet_files
from tests.fleet.test_fuzz import BASE, NAMES, damaged
from tests.fuzz.conftest import budget, count

SETTINGS_FILES = {"models.yaml", "fleet.yaml"}


def check_fleet(files: dict[str, bytes], target: str) -> None:
    try:
        fleet = load_fleet_files(files, label="regions")
    except FleetError as exc:
        assert exc.problems and exc.exit_code == 1
        for p in exc.problems:
            assert p.file.startswith("regions"), p
            assert p.line is None or p.line >= 1, p
            assert p.message and p.render()
            assert p.to_json()["file"] == p.file
        count(target, "refused (FleetError, exit 1)")
        return
    directive_files = [r for r in files if r.startswith("directives/") and r.endswith(".yaml")]
    profiles = [r for r in files if "/" not in r and r.endswith(".yaml")]
    assert len(fleet.directives) == len(directive_files), sorted(fleet.directives)
    assert len(fleet.jurisdictions) == len([r for r in profiles if r not in SETTINGS_FILES])
    count(target, "valid fleet, nothing lost")


@budget()
@given(files=damaged())
def test_damaged_fleet_yaml(files: dict[str, bytes]) -> None:
    check_fleet(files, "fleet YAML (damaged files)")


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
    check_fleet(files, "directive and signature files")
