"""The stack's artifact placement (a Pulumi dynamic resource) against a real moto server: its
create, update and delete are the ``aws`` provider's own copy and removal, so the weights a
stack places are exactly those the built-in provider places and observes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestrator.fleet.model import Site
from orchestrator.providers.aws import AwsProvider
from orchestrator.providers.aws.naming import bucket_name
from orchestrator.providers.aws.s3 import MANIFEST
from orchestrator.providers.base import ProviderContext, Resource, ResourceKind, spec_of
from orchestrator.providers.pulumi.artifacts import ArtifactProvider
from tests.providers.fleets import WEIGHTS, unique

SITE = Site(
    id="aws-eu-central-1",
    jurisdiction="EU",
    provider="aws",
    region="eu-central-1",
    country="DE",
    operator="acme-eu-gmbh",
    governed_by=frozenset(),
    governing=frozenset({"EU"}),
)


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The providers read their endpoint from the environment, as in a real account."""
    monkeypatch.setenv("SOVEREIGN_AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("SOVEREIGN_AWS_MAX_ATTEMPTS", "1")
    return moto_url


def props(tag: str, source: str, model: str = "fable-5", **extra: Any) -> dict[str, Any]:
    return {
        "jurisdiction": "EU",
        "bucket_suffix": tag,
        "fleet_dir": ".",
        "address": f"artifact.{SITE.id}.{model}",
        "site": {
            "id": SITE.id,
            "provider": "aws",
            "region": SITE.region,
            "country": SITE.country,
            "operator": SITE.operator,
        },
        "model": model,
        "source": source,
        "tags": {},
        **extra,
    }


def builtin(tag: str, tmp_path: Path) -> AwsProvider:
    return AwsProvider(ProviderContext(state_dir=tmp_path, options={"bucket_suffix": tag}))


def artifacts_seen(provider: AwsProvider) -> set[Resource]:
    return {r for r in provider.observe(SITE) if r.kind is ResourceKind.ARTIFACT}


def test_a_placement_is_the_built_in_copy_and_removal(
    aws_env: str, source_bucket: str, tmp_path: Path
) -> None:
    tag = unique()
    source = f"s3://{source_bucket}/fable-5/"
    placement = ArtifactProvider()
    created = placement.create(props(tag, source))
    assert created.id == f"artifact.{SITE.id}.fable-5"

    s3 = boto3.client("s3", endpoint_url=aws_env, region_name=SITE.region)
    bucket = bucket_name(SITE.id, tag)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {f"fable-5/{k}" for k in WEIGHTS} | {f"fable-5/{MANIFEST}"} <= keys
    provider = builtin(tag, tmp_path)
    assert artifacts_seen(provider) == {
        Resource(ResourceKind.ARTIFACT, SITE.id, "fable-5", spec=spec_of(source=source))
    }

    moved = f"s3://{source_bucket}/olmo-3/"
    assert placement.diff(created.id, props(tag, source), props(tag, moved)).changes
    assert not placement.diff(created.id, props(tag, source), props(tag, moved)).replaces
    placement.update(created.id, props(tag, source), props(tag, moved))
    assert artifacts_seen(provider) == {
        Resource(ResourceKind.ARTIFACT, SITE.id, "fable-5", spec=spec_of(source=moved))
    }

    placement.delete(created.id, props(tag, moved))
    assert artifacts_seen(provider) == set()
    left = s3.list_object_versions(Bucket=bucket, Prefix="fable-5/")
    assert not left.get("Versions") and not left.get("DeleteMarkers")  # no version left behind


def test_moving_a_placement_to_another_site_or_model_replaces_it() -> None:
    placement = ArtifactProvider()
    before = props("t", "s3://m/fable-5/")
    assert not placement.diff("x", before, dict(before)).changes
    other_model = props("t", "s3://m/fable-5/", model="olmo-3")
    result = placement.diff("x", before, other_model)
    assert result.changes and result.replaces == ["model"]
