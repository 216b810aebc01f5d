"""A random fleet's first rollout on emulated clouds: never refused, and every site placed.

Random fleets (tests/strategies.py) are given real cloud sites: each site becomes an AWS site on
the moto server or a GCP site on the fake-gcs-server of its region, and every model's weights
come from an s3:// or gs:// source, so some copies are server-side and some streamed across
clouds. The first plan creates only, so the interlock never refuses it (a disruption budget
guards deletions); carrying it out through the real providers succeeds at every site, and
observing afterwards finds exactly what was desired.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings

from orchestrator.fleet.model import Fleet, Model
from orchestrator.planning.desired import desired_pairs, desired_state
from orchestrator.planning.diff import CauseContext, diff
from orchestrator.providers import create_provider
from orchestrator.providers.base import Provider, ProviderContext
from orchestrator.reconcile.interlock import check_interlocks
from tests.providers.fleets import changes_between, unique
from tests.strategies import fleets, instants

pytestmark = pytest.mark.slow

REGIONS = (
    ("aws", "us-east-1"),
    ("gcp", "us-central1"),
    ("aws", "eu-central-1"),
    ("gcp", "europe-west4"),
)


def on_clouds(fleet: Fleet, s3_bucket: str, gs_bucket: str) -> Fleet:
    sites = {}
    for i, site in enumerate(sorted(fleet.sites.values(), key=lambda s: s.id)):
        provider, region = REGIONS[i % len(REGIONS)]
        sites[site.id] = replace(site, provider=provider, region=region)
    models = {
        m.id: Model(
            m.id,
            m.origin,
            m.export_control,
            f"s3://{s3_bucket}/{m.id}/" if i % 2 == 0 else f"gs://{gs_bucket}/{m.id}/",
        )
        for i, m in enumerate(sorted(fleet.models.values(), key=lambda m: m.id))
    }
    return Fleet(fleet.jurisdictions, sites, models, fleet.directives, fleet.settings)


@pytest.fixture(scope="module")
def sources(moto_url: str, gcs_url: str, gcs_eu_url: str) -> tuple[str, str]:
    import boto3

    from tests.cloud_servers import gcs_client
    from tests.providers.fleets import WEIGHTS

    tag = unique()
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket=f"rnd-{tag}")
    for url in (gcs_url, gcs_eu_url):
        gcs_client(url).create_bucket(f"rnd-{tag}")
    for model in ("m0", "m1", "m2"):
        for key, body in WEIGHTS.items():
            s3.put_object(Bucket=f"rnd-{tag}", Key=f"{model}/{key}", Body=body)
            for url in (gcs_url, gcs_eu_url):
                gcs_client(url).bucket(f"rnd-{tag}").blob(f"{model}/{key}").upload_from_string(body)
    return f"rnd-{tag}", f"rnd-{tag}"


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fleet=fleets(max_directives=2), at=instants())
def test_a_random_fleets_first_rollout_succeeds_on_the_emulators(
    fleet: Fleet,
    at: datetime,
    sources: tuple[str, str],
    moto_url: str,
    gcs_url: str,
    gcs_eu_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tag = unique()
    fleet = on_clouds(fleet, *sources)
    desired = desired_state(fleet, at, fleet_digest="d", include_dns=False)
    ctx = CauseContext(jurisdiction_of={s.id: s.jurisdiction for s in fleet.sites.values()})
    changes = diff(desired, frozenset(), ctx)
    assert check_interlocks(fleet, at, desired_pairs(fleet, at), changes) == ()
    options = {
        "aws_endpoint_url": moto_url,
        "aws_max_attempts": "2",
        "aws_sagemaker_role_arn": "arn:aws:iam::123456789012:role/sovereign-random",
        "aws_sagemaker_instance_type": "ml.g4dn.xlarge",
        "gcs_endpoint_url": gcs_url,
        "gcs_endpoint_url.europe-west4": gcs_eu_url,
        "gcs_retry_timeout": "5",
        "bucket_suffix": tag,
    }
    context = ProviderContext(
        state_dir=tmp_path_factory.mktemp("random"), models=fleet.models, options=options
    )
    providers = {name: create_provider(name, context) for name in ("aws", "gcp")}
    for site_id in sorted(fleet.sites):
        resources = frozenset(r for r in desired if r.target == site_id)
        site = fleet.sites[site_id]
        provider = providers[site.provider]
        assert isinstance(provider, Provider)
        for change in changes_between(resources, provider.observe(site)):
            provider.apply(site, change)
        assert provider.observe(site) == resources
