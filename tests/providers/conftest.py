"""Session fixtures: one moto server and fake-gcs-servers for the whole provider suite.

Tests isolate themselves by using their own site ids / bucket suffixes rather than resetting
the servers, so they can share the (slow-to-start) servers safely. fake-gcs-server puts every
bucket in the one location it was started with, so there is one per GCS region under test.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from tests.cloud_servers import cloud_credentials, fake_gcs_server, moto_server
from tests.providers.fleets import MODEL_IDS, WEIGHTS, unique


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
    """fake-gcs-server whose buckets are in US-CENTRAL1."""
    with fake_gcs_server() as url:
        yield url


@pytest.fixture(scope="session")
def gcs_eu_url(dummy_credentials: None) -> Iterator[str]:
    """fake-gcs-server whose buckets are in EUROPE-WEST4."""
    with fake_gcs_server(location="europe-west4") as url:
        yield url


@pytest.fixture(scope="session")
def source_bucket(moto_url: str) -> str:
    """The fleet's artifact source: every model's weights under ``<model>/`` in us-east-1."""
    name = f"acme-models-{unique()}"
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    for model in MODEL_IDS:
        for key, body in WEIGHTS.items():
            s3.put_object(Bucket=name, Key=f"{model}/{key}", Body=body)
    return name
