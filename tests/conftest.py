"""Fixtures shared across test folders: the example fleet and small signed fleets in tmp_path;
the `campaign` marker on every test of tests/fuzz and tests/chaos, `slow` on every test
that uses moto's server or fake-gcs-server."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from tests.fleet.builder import FleetFactory
from tests.processes import kill_all

REPO = Path(__file__).resolve().parent.parent

# No Hypothesis deadline for any test: on a loaded machine (a shared CI runner, eight suites
# at once) one example of a test that reads files or talks HTTP can take far longer than the
# default 200 ms, and a deadline failure there says nothing about the code. Tests that must
# bound time measure it with an injected clock instead. A test's own @settings still wins.
settings.register_profile("sovereign", deadline=None)
settings.load_profile("sovereign")

TESTS = REPO / "tests"
# Folders whose every test is a campaign's smoke run (`make fuzz`, `make chaos` at full budget);
# `make test-fast` leaves them out with `-m "not campaign"`.
CAMPAIGN_FOLDERS = ("fuzz", "chaos")


# The session fixtures that start moto's server or fake-gcs-server: a test that uses one is
# `slow` (real servers, docs of the marker in pyproject.toml), wherever it lives.
CLOUD_SERVER_FIXTURES = frozenset(
    {
        "moto_url",
        "gcs_url",
        "gcs_eu_url",
        "adaptor_moto_url",
        "adaptor_gcs_url",
        "state_moto_url",
        "state_gcs_url",
        "cloud_urls",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(TESTS).parts if TESTS in item.path.parents else ()
        if parts and parts[0] in CAMPAIGN_FOLDERS:
            item.add_marker(pytest.mark.campaign)
        if CLOUD_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def example_fleet_dir() -> Path:
    """The committed example fleet (read only: never write into it)."""
    return REPO / "regions"


@pytest.fixture
def signed_fleet_factory(tmp_path: Path) -> FleetFactory:
    """``signed_fleet_factory(files=..., mutate=...) -> Path``: see tests/fleet/builder.py."""
    return FleetFactory(tmp_path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No process a test spawned (tests/processes.py) outlives the run."""
    del session, exitstatus
    kill_all()
