"""Session fixtures: a moto server and a fake-gcs-server on 127.0.0.1, dummy credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def adaptor_credentials() -> Iterator[None]:
    from tests.cloud_servers import cloud_credentials

    with cloud_credentials():
        yield


@pytest.fixture(scope="session")
def adaptor_moto_url(adaptor_credentials: None) -> Iterator[str]:
    from tests.cloud_servers import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def adaptor_gcs_url(adaptor_credentials: None) -> Iterator[str]:
    from orchestrator.adaptors import gcp

    gcp.storage_module()  # imported with its grpcio-status ImportWarning silenced
    from tests.cloud_servers import fake_gcs_server

    with fake_gcs_server() as url:
        yield url
