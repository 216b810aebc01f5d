"""What `validate` says about authority sets: duplicate keys, and the shape of a rotation.

"Two authorities, one key" (issue 19): a second authority id with an existing public key and
``directive_threshold: 2`` would let one key meet a two-person rule. It is a validate error
naming the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import FleetError
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Action
from tests.fleet.builder import FleetFactory, keys

ROTATE_YAML = """\
id: us-rotate-1
jurisdiction: US
issuer: us-gov
reference: "key ceremony"
action: rotate
authorities:
  - id: us-gov
    public_key: "{us-gov}"
  - id: us-court
    public_key: "{us-court}"
directive_threshold: 1
effective: 2026-01-01T00:00:00Z
"""


def problems_of(root: Path) -> list[tuple[str, int | None, str, str]]:
    with pytest.raises(FleetError) as caught:
        load_fleet(root)
    return [(Path(p.file).name, p.line, p.field, p.message) for p in caught.value.problems]


def rotate_text(**swap: str) -> str:
    text = ROTATE_YAML
    for authority, (_, public) in keys().items():
        text = text.replace("{" + authority + "}", public)
    for old, new in swap.items():
        text = text.replace(old, new)
    return text


def test_two_authorities_with_one_key_are_refused(signed_fleet_factory: FleetFactory) -> None:
    us_gov = keys()["us-gov"][1]
    root = signed_fleet_factory(
        mutate={
            "us.yaml": [
                (
                    "directive_threshold: 1",
                    f'  - id: us-gov-2\n    public_key: "{us_gov}"\ndirective_threshold: 2',
                )
            ]
        }
    )
    # the writer signs "twice": the one key's signature under both names
    sig = root / "directives/us-d1.yaml.sig"
    line = sig.read_text().strip()
    sig.write_text(f"{line}\n{line.replace('us-gov ', 'us-gov-2 ')}\n")
    found = problems_of(root)
    assert len(found) == 1, found
    file, at, field, message = found[0]
    assert file == "us.yaml" and at == 10  # the public_key line of us-gov-2
    assert field == "authorities[2].public_key"
    assert "us-gov-2" in message and "same public key as 'us-gov'" in message


def test_one_key_in_two_jurisdictions_is_refused(signed_fleet_factory: FleetFactory) -> None:
    us_gov = keys()["us-gov"][1]
    root = signed_fleet_factory(
        mutate={"eu.yaml": [(f'public_key: "{keys()["eu-gov"][1]}"', f'public_key: "{us_gov}"')]}
    )
    messages = [m for _, _, _, m in problems_of(root)]
    assert any("us-gov" in m and "same public key as" in m for m in messages), messages


def test_a_rotation_carrying_the_profile_set_is_valid(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory({"directives/us-rotate-1.yaml": rotate_text()})
    fleet = load_fleet(root)
    assert fleet.directives["us-rotate-1"].action is Action.ROTATE


@pytest.mark.parametrize(
    ("swap", "field", "says"),
    [
        ({"  - id: us-court\n": "  - id: us-other\n"}, "authorities", "not exactly those"),
        ({"directive_threshold: 1": "directive_threshold: 2"}, "directive_threshold", "not the"),
        ({"action: rotate\n": "action: rotate\nmodels: [m-us]\n"}, "models", "remove 'models'"),
        ({"directive_threshold: 1\n": ""}, "action", "add 'directive_threshold'"),
    ],
)
def test_a_rotation_must_carry_exactly_the_profile_set(
    signed_fleet_factory: FleetFactory, swap: dict[str, str], field: str, says: str
) -> None:
    root = signed_fleet_factory({"directives/us-rotate-1.yaml": rotate_text(**swap)})
    found = [(f, m) for name, _, f, m in problems_of(root) if name == "us-rotate-1.yaml"]
    assert any(f == field and says in m for f, m in found), found


def test_only_a_rotation_carries_an_authority_set(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={"directives/us-d1.yaml": [("supersedes: null", "directive_threshold: 1")]}
    )
    found = problems_of(root)
    assert any(f == "directive_threshold" and "only a rotation" in m for _, _, f, m in found)
