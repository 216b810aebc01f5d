"""The committed example fleet (regions/) validates and says what the cross-team brief says."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.fleet.loader import load_fleet, load_fleet_files, read_fleet_files
from orchestrator.fleet.model import Action, Unlisted


def test_example_fleet_is_valid(example_fleet_dir: Path) -> None:
    fleet = load_fleet(example_fleet_dir)
    assert set(fleet.jurisdictions) == {"US", "EU", "UK", "JP", "IN"}
    assert len(fleet.sites) == 10
    assert set(fleet.models) == {"fable-5", "mythos-5", "mistral-large-3", "olmo-3", "sarvam-2"}
    assert fleet.settings.unlisted_countries is Unlisted.DENY
    assert len(fleet.digest) == 64


def test_example_fleet_facts(example_fleet_dir: Path) -> None:
    fleet = load_fleet(example_fleet_dir)
    tokyo = fleet.sites["aws-ap-northeast-1"]
    assert (tokyo.jurisdiction, tokyo.country, tokyo.operator) == ("JP", "JP", "acme-us-inc")
    assert tokyo.governing == frozenset({"JP", "US"})
    assert all(s.governed_by == frozenset() for s in fleet.sites.values() if s.jurisdiction == "EU")
    assert fleet.jurisdictions["UK"].process_in == frozenset({"UK", "EU"})
    assert fleet.jurisdictions["US"].export["restricted"] == frozenset({"EU", "UK", "JP"})
    assert fleet.jurisdictions["EU"].export["restricted"] == frozenset({"UK"})
    assert {"DE", "FR", "NL", "IE", "AT", "BE", "IT", "ES"} <= fleet.jurisdictions["EU"].countries
    assert fleet.home_of("GB") == "UK"
    assert fleet.models["sarvam-2"].origin == "IN"
    assert fleet.models["olmo-3"].export_control == "open"


def test_example_directives(example_fleet_dir: Path) -> None:
    fleet = load_fleet(example_fleet_dir)
    first = fleet.directives["us-doc-2026-06-12"]
    second = fleet.directives["us-doc-2026-06-26"]
    assert first.action is Action.SUSPEND
    assert first.models == frozenset({"fable-5", "mythos-5"})
    assert first.audience.nationality_not_in == frozenset({"US"})
    assert first.audience.except_groups == frozenset()
    assert first.effective == datetime(2026, 6, 12, tzinfo=UTC)
    assert second.supersedes == first.id
    assert second.audience.except_groups == frozenset({"trusted-partners"})
    assert first.signers == second.signers == ("us-commerce",)


def test_no_private_key_committed(example_fleet_dir: Path) -> None:
    for path in example_fleet_dir.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_in_memory_load_matches_disk(example_fleet_dir: Path) -> None:
    files = read_fleet_files(example_fleet_dir)
    assert "models.yaml" in files
    assert "directives/us-doc-2026-06-12.yaml.sig" in files
    assert load_fleet_files(files).digest == load_fleet(example_fleet_dir).digest
