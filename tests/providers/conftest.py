"""Session fixtures: one moto server and one fake-gcs-server for the whole provider suite.

Tests isolate themselves by using their own site ids / bucket suffixes rather than resetting
the servers, so they can share the (slow-to-start) servers safely.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cloud_servers import cloud_credentials, fake_gcs_server, moto_server


@pytest.fixture(scope="session")
def dummy_credentials() -> Iterator[None]:
    with cloud_credentials():
        yield


@pytest.fixture(scope="session")
def moto_url(dummy_credentials: None) -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def gcs_url(dummy_credentials: None) -> Iterator[str]:
    with fake_gcs_server() as url:
        yield url
