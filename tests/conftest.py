"""Fixtures shared across test folders: the example fleet and small signed fleets in tmp_path;
the `campaign` marker on every test of tests/fuzz and tests/chaos."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet.builder import FleetFactory

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
# Folders whose every test is a campaign's smoke run (`make fuzz`, `make chaos` at full budget);
# `make test-fast` leaves them out with `-m "not campaign"`.
CAMPAIGN_FOLDERS = ("fuzz", "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(TESTS).parts if TESTS in item.path.parents else ()
        if parts and parts[0] in CAMPAIGN_FOLDERS:
            item.add_marker(pytest.mark.campaign)


@pytest.fixture
def example_fleet_dir() -> Path:
    """The committed example fleet (read only: never write into it)."""
    return REPO / "regions"


@pytest.fixture
def signed_fleet_factory(tmp_path: Path) -> FleetFactory:
    """``signed_fleet_factory(files=..., mutate=...) -> Path``: see tests/fleet/builder.py."""
    return FleetFactory(tmp_path)
