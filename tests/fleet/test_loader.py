"""Loader API details: digest, in-memory files, one directive outside the fleet, YAML quirks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import FleetError
from orchestrator.fleet.digest import fleet_digest
from orchestrator.fleet.loader import (
    load_directive_file,
    load_fleet,
    load_fleet_files,
    read_fleet_files,
)
from orchestrator.fleet.model import EVERYONE, Action
from orchestrator.fleet.regions import aws_regions, known_regions, region_country
from orchestrator.fleet.yamlsource import parse_yaml
from tests.fleet.builder import DIRECTIVE_FILE, DIRECTIVE_YAML, FleetFactory, sign

D = DIRECTIVE_FILE


def test_digest_names_every_byte(signed_fleet_factory: FleetFactory) -> None:
    files = read_fleet_files(signed_fleet_factory())
    base = fleet_digest(files)
    assert base == fleet_digest(dict(reversed(list(files.items()))))
    for rel in files:
        changed = dict(files)
        changed[rel] = files[rel] + b" "
        assert fleet_digest(changed) != base, rel
    renamed = {("x-" + k if k == "fleet.yaml" else k): v for k, v in files.items()}
    assert fleet_digest(renamed) != base


def test_read_fleet_files_skips_hidden_and_other_dirs(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    (root / ".sovereign").mkdir()
    (root / ".sovereign" / "state.yaml").write_text("x")
    (root / "notes").mkdir()
    (root / "notes" / "a.yaml").write_text("x")
    (root / "README.md").write_text("x")
    assert set(read_fleet_files(root)) == {
        "eu.yaml",
        "us.yaml",
        "models.yaml",
        "fleet.yaml",
        D,
        D + ".sig",
    }
    load_fleet(root)


def test_missing_directory() -> None:
    with pytest.raises(FleetError) as caught:
        load_fleet(Path("no/such/fleet"))
    (problem,) = caught.value.problems
    assert problem.file == "no/such/fleet"
    assert "fleet directory not found" in problem.message


def test_in_memory_files_outside_the_layout(signed_fleet_factory: FleetFactory) -> None:
    files = read_fleet_files(signed_fleet_factory())
    files["deep/x.yaml"] = b"a: 1\n"
    with pytest.raises(FleetError) as caught:
        load_fleet_files(files, label="applied")
    (problem,) = caught.value.problems
    assert problem.file == "applied/deep/x.yaml"
    assert "not part of the fleet layout" in problem.message


def test_norway_stays_a_country(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={"eu.yaml": [("countries: [DE, FR]", "countries: [DE, NO]")]}
    )
    assert load_fleet(root).jurisdictions["EU"].countries == frozenset({"DE", "NO"})


def test_audience_expands_jurisdictions(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={
            D: [
                (
                    "  nationality_not_in: [US]",
                    "  nationality_not_in: [US, CH]\n  residency_in: [EU]\n  except_groups: [ops]",
                )
            ]
        }
    )
    audience = load_fleet(root).directives["us-d1"].audience
    assert audience.nationality_not_in == frozenset({"US", "CH"})
    assert audience.residency_in == frozenset({"DE", "FR"})
    assert audience.nationality_in is None
    assert audience.except_groups == frozenset({"ops"})


def test_withdraw_everyone_and_all_models(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={
            D: [
                ("action: suspend", "action: withdraw"),
                ("models: [m-us]", "models: ['*']"),
                ("audience:\n  nationality_not_in: [US]\n", ""),
            ]
        }
    )
    directive = load_fleet(root).directives["us-d1"]
    assert directive.action is Action.WITHDRAW
    assert directive.audience == EVERYONE
    assert directive.names("anything")


def test_timestamps_normalise_to_utc(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={
            D: [
                ("2026-01-01T00:00:00Z", '"2026-01-01T02:00:00+02:00"'),
                ("expires: null", "expires: 2026-02-01T09:00:00+09:00"),
            ]
        }
    )
    directive = load_fleet(root).directives["us-d1"]
    assert directive.effective.isoformat() == "2026-01-01T00:00:00+00:00"
    assert directive.expires is not None
    assert directive.expires.isoformat() == "2026-02-01T00:00:00+00:00"


def test_site_extension_fields(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={
            "eu.yaml": [
                (
                    "    governed_by: [US]\n",
                    "    governed_by: [US]\n    instance_type: ml.g5.xlarge\n"
                    "    instance_count: 2\n"
                    "    capacity: 3\n    endpoint: https://eu-2.example\n",
                )
            ]
        }
    )
    site = load_fleet(root).sites["eu-2"]
    assert (site.instance_type, site.instance_count, site.capacity, site.endpoint) == (
        "ml.g5.xlarge",
        2,
        3,
        "https://eu-2.example",
    )
    assert site.governing == frozenset({"EU", "US"})
    assert load_fleet(root).sites["eu-1"].instance_count == 1


def test_dns_settings(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={
            "fleet.yaml": [
                ("deny\n", "any\ndns:\n  hosted_zone_id: Z1\n  domain: inference.example\n")
            ]
        }
    )
    settings = load_fleet(root).settings
    assert settings.unlisted_countries.value == "any"
    assert settings.dns is not None
    assert (settings.dns.hosted_zone_id, settings.dns.domain) == ("Z1", "inference.example")


def test_fleet_yaml_is_optional(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory({"fleet.yaml": None})
    assert load_fleet(root).settings.unlisted_countries.value == "deny"


NEW = DIRECTIVE_YAML.replace("id: us-d1", "id: us-d2").replace(
    "supersedes: null", "supersedes: us-d1"
)


def test_load_directive_file_outside_the_fleet(
    signed_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    fleet = load_fleet(signed_fleet_factory())
    path = tmp_path / "new.yaml"
    path.write_text(NEW)
    assert load_directive_file(path, fleet, require_signature=False).signers == ()
    with pytest.raises(FleetError) as caught:
        load_directive_file(path, fleet)
    assert "missing signature file" in caught.value.problems[0].message
    sign(path, "us-gov")
    directive = load_directive_file(path, fleet)
    assert (directive.id, directive.supersedes, directive.signers) == (
        "us-d2",
        "us-d1",
        ("us-gov",),
    )


def test_load_directive_file_rejects_taken_id(
    signed_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    root = signed_fleet_factory()
    fleet = load_fleet(root)
    assert load_directive_file(root / D, fleet).id == "us-d1"  # the fleet's own file is fine
    path = tmp_path / "clash.yaml"
    path.write_text(DIRECTIVE_YAML.replace("test directive", "another one"))
    sign(path, "us-gov")
    with pytest.raises(FleetError) as caught:
        load_directive_file(path, fleet)
    assert [(p.line, p.field) for p in caught.value.problems] == [(1, "id")]


def test_parse_yaml_line_map() -> None:
    doc, problems = parse_yaml("f.yaml", b"a:\n  b:\n    - x\n    - {c: 1}\nd: [1, 2]\n")
    assert problems == []
    assert doc is not None
    assert doc.line_of("a.b[1].c") == 4
    assert doc.line_of("a.b[0]") == 3
    assert doc.line_of("d[1]") == 5
    assert doc.line_of("a.b[1].missing") == 4
    assert doc.line_of("zzz") == 1


def test_region_catalogue_comes_from_botocore_data() -> None:
    regions = aws_regions()
    assert {"us-east-1", "eu-central-1", "ap-northeast-1", "ap-south-1"} <= regions
    assert "eu-centrall-1" not in regions
    assert "aws-global" not in regions  # a pseudo-region of partitions.json, not a region
    assert {"us-gov-west-1", "cn-north-1"} <= regions  # every partition, not only "aws"
    assert known_regions("local") is None
    gcp = known_regions("gcp")
    assert gcp is not None
    assert "europe-west4" in gcp
    assert region_country("gcp", "europe-west2") == "GB"
    assert region_country("aws", "nowhere-1") is None


def test_validation_never_imports_a_cloud_sdk(example_fleet_dir: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from orchestrator.fleet.loader import load_fleet\n"
        f"load_fleet(Path({str(example_fleet_dir)!r}))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'google', 'pulumi'))\n"
        "assert not loaded, loaded\n"
    )
    repo = example_fleet_dir.parent
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert done.returncode == 0, done.stderr
