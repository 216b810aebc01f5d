"""Fixtures shared across test folders: the example fleet and small signed fleets in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet.builder import FleetFactory

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def example_fleet_dir() -> Path:
    """The committed example fleet (read only: never write into it)."""
    return REPO / "regions"


@pytest.fixture
def signed_fleet_factory(tmp_path: Path) -> FleetFactory:
    """``signed_fleet_factory(files=..., mutate=...) -> Path``: see tests/fleet/builder.py."""
    return FleetFactory(tmp_path)
