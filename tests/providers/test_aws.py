"""The AWS provider against a real moto server over HTTP: buckets, artifacts, SageMaker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestrator.errors import PermanentProviderError, TransientProviderError
from orchestrator.fleet.model import Fleet
from orchestrator.providers.aws import AwsProvider
from orchestrator.providers.aws.naming import bucket_name, sagemaker_base_name
from orchestrator.providers.aws.s3 import MANIFEST
from orchestrator.providers.base import (
    Op,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
    spec_of,
)
from tests.cloud_servers import free_port
from tests.providers.fleets import (
    WEIGHTS,
    changes_between,
    cloud_fleet,
    desired_site_resources,
    unique,
    withdraw,
)

pytestmark = pytest.mark.slow  # the moto server

ROLE = "arn:aws:iam::123456789012:role/sovereign-test"
MOTO_INSTANCE_TYPE = "ml.g4dn.xlarge"  # moto's instance-type enum predates ml.g5


@dataclass
class Env:
    fleet: Fleet
    tag: str
    url: str
    tmp: Path

    def provider(self, fleet: Fleet | None = None, **options: str) -> AwsProvider:
        base = {
            "aws_endpoint_url": self.url,
            "bucket_suffix": self.tag,
            "aws_sagemaker_role_arn": ROLE,
            "aws_sagemaker_instance_type": MOTO_INSTANCE_TYPE,
            "aws_max_attempts": "1",
        }
        base.update(options)
        return AwsProvider(
            ProviderContext(state_dir=self.tmp, models=(fleet or self.fleet).models, options=base)
        )

    def aws_sites(self, fleet: Fleet | None = None) -> list[str]:
        f = fleet or self.fleet
        return sorted(s for s, site in f.sites.items() if site.provider == "aws")

    def client(self, service: str, region: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name=region)

    def converge(self, provider: AwsProvider, fleet: Fleet | None = None) -> int:
        """Apply every change the desired state needs; returns how many there were."""
        f = fleet or self.fleet
        done = 0
        for sid, wanted in desired_site_resources(f, self.aws_sites(f)).items():
            site = f.sites[sid]
            for change in changes_between(wanted, provider.observe(site)):
                provider.apply(site, change)
                done += 1
        return done


@pytest.fixture
def env(moto_url: str, source_bucket: str, tmp_path: Path) -> Iterator[Env]:
    tag = unique()
    yield Env(cloud_fleet(tag, artifact_bucket=source_bucket), tag, moto_url, tmp_path)


@pytest.fixture(scope="module")
def converged(
    moto_url: str, source_bucket: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Env, AwsProvider, int]:
    """One fleet applied once, shared by the tests that only read it back (saves a converge
    per test). Returns the env, its provider and how many changes the first apply made."""
    tag = unique()
    env = Env(
        cloud_fleet(tag, artifact_bucket=source_bucket),
        tag,
        moto_url,
        tmp_path_factory.mktemp("aws"),
    )
    provider = env.provider()
    return env, provider, env.converge(provider)


def _site(env: Env, prefix: str) -> str:
    return next(s for s in env.fleet.sites if s.startswith(prefix))


def test_apply_creates_tagged_private_versioned_bucket_and_endpoints(
    converged: tuple[Env, AwsProvider, int],
) -> None:
    env, provider, applied = converged
    assert applied > 0
    desired = desired_site_resources(env.fleet, env.aws_sites())
    for sid in env.aws_sites():
        assert provider.observe(env.fleet.sites[sid]) == desired[sid]

    eu = env.fleet.sites[_site(env, "aws-eu-central-1")]
    s3 = env.client("s3", eu.region)
    bucket = bucket_name(eu.id, env.tag)
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"sovereign:managed": "true", "sovereign:site": eu.id}
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-central-1"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {f"fable-5/{k}" for k in WEIGHTS} <= keys and f"fable-5/{MANIFEST}" in keys
    copied = s3.get_object(Bucket=bucket, Key="fable-5/model-00001.safetensors")
    assert copied["Body"].read() == WEIGHTS["model-00001.safetensors"]
    assert copied["Metadata"]["sovereign-model"] == "fable-5"
    object_tags = s3.get_object_tagging(Bucket=bucket, Key="fable-5/config.json")["TagSet"]
    assert {"Key": "sovereign:model", "Value": "fable-5"} in object_tags

    sm = env.client("sagemaker", eu.region)
    name = sagemaker_base_name(eu.id, "fable-5")
    endpoint = sm.describe_endpoint(EndpointName=name)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == (MOTO_INSTANCE_TYPE, 2)
    for arn in (
        endpoint["EndpointArn"],
        config["EndpointConfigArn"],
        sm.describe_model(ModelName=name)["ModelArn"],
    ):
        assert {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]} == {
            "sovereign:managed": "true",
            "sovereign:site": eu.id,
            "sovereign:model": "fable-5",
        }
    model = sm.describe_model(ModelName=name)
    data = model["PrimaryContainer"].get("ModelDataSource", {}).get("S3DataSource", {})
    assert data.get("S3Uri", f"s3://{bucket}/fable-5/") == f"s3://{bucket}/fable-5/"


def test_second_apply_is_a_no_op(converged: tuple[Env, AwsProvider, int]) -> None:
    env, _, _ = converged
    provider = env.provider()  # a new run: nothing carried over but what the cloud holds
    assert env.converge(provider) == 0
    # Re-applying an already-done create is also harmless (idempotent apply).
    eu = env.fleet.sites[_site(env, "aws-eu-central-1")]
    for resource in desired_site_resources(env.fleet, [eu.id])[eu.id]:
        provider.apply(eu, ResourceChange(Op.CREATE, None, resource))
    assert (
        changes_between(desired_site_resources(env.fleet, [eu.id])[eu.id], provider.observe(eu))
        == []
    )


def test_resources_deleted_behind_our_back_show_up_as_drift(env: Env) -> None:
    provider = env.provider()
    env.converge(provider)
    us = env.fleet.sites[_site(env, "aws-us-east-1")]
    sm = env.client("sagemaker", us.region)
    sm.delete_endpoint(EndpointName=sagemaker_base_name(us.id, "olmo-3"))
    s3 = env.client("s3", us.region)
    s3.delete_object(Bucket=bucket_name(us.id, env.tag), Key="fable-5/config.json")

    seen = provider.observe(us)
    kinds = {(r.kind, r.model) for r in seen}
    assert (ResourceKind.DEPLOYMENT, "olmo-3") not in kinds
    assert (ResourceKind.ARTIFACT, "fable-5") not in kinds
    assert (ResourceKind.DEPLOYMENT, "fable-5") in kinds
    assert env.converge(provider) == 2
    assert env.converge(provider) == 0


def test_a_deleted_bucket_is_observed_gone_and_recreated(env: Env) -> None:
    provider = env.provider()
    env.converge(provider)
    us = env.fleet.sites[_site(env, "aws-us-east-1")]
    s3 = env.client("s3", us.region)
    bucket = bucket_name(us.id, env.tag)
    versions = s3.list_object_versions(Bucket=bucket)
    doomed = [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
    ]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed})
    s3.delete_bucket(Bucket=bucket)
    assert {r.kind for r in provider.observe(us)} == {ResourceKind.DEPLOYMENT}
    env.converge(provider)
    assert provider.observe(us) == desired_site_resources(env.fleet, [us.id])[us.id]


def test_untagged_resources_are_never_observed_modified_or_deleted(env: Env) -> None:
    provider = env.provider()
    eu = env.fleet.sites[_site(env, "aws-eu-central-1")]
    s3 = env.client("s3", eu.region)
    sm = env.client("sagemaker", eu.region)
    # An untagged namesake of our bucket, and an untagged endpoint named like ours.
    namesake = bucket_name(eu.id, env.tag)
    s3.create_bucket(Bucket=namesake, CreateBucketConfiguration={"LocationConstraint": eu.region})
    s3.put_object(
        Bucket=namesake, Key=f"fable-5/{MANIFEST}", Body=b'{"source": "s3://x/", "objects": []}'
    )
    foreign = sagemaker_base_name(eu.id, "olmo-3")
    sm.create_model(
        ModelName=foreign,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/x"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{foreign}-cfg",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": foreign,
                "InstanceType": MOTO_INSTANCE_TYPE,
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName=foreign, EndpointConfigName=f"{foreign}-cfg")

    assert provider.observe(eu) == frozenset()
    artifact = Resource(
        ResourceKind.ARTIFACT,
        eu.id,
        "fable-5",
        spec=spec_of(source=env.fleet.models["fable-5"].artifact),
    )
    with pytest.raises(PermanentProviderError, match="not tagged as Sovereign's"):
        provider.apply(eu, ResourceChange(Op.CREATE, None, artifact))
    deployment = Resource(ResourceKind.DEPLOYMENT, eu.id, "olmo-3", spec=spec_of(instance_count=2))
    with pytest.raises(PermanentProviderError, match="not tagged as Sovereign's"):
        provider.apply(eu, ResourceChange(Op.CREATE, None, deployment))
    # Deletes addressed at them do nothing.
    provider.apply(eu, ResourceChange(Op.DELETE, artifact, None))
    provider.apply(eu, ResourceChange(Op.DELETE, deployment, None))

    assert "TagSet" not in _safe(lambda: s3.get_bucket_tagging(Bucket=namesake))
    assert s3.get_bucket_versioning(Bucket=namesake).get("Status") is None
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=namesake)["Contents"]] == [
        f"fable-5/{MANIFEST}"
    ]
    assert sm.describe_endpoint(EndpointName=foreign)["EndpointConfigName"] == f"{foreign}-cfg"
    assert sm.describe_model(ModelName=foreign)["ModelName"] == foreign


def test_a_bare_empty_namesake_is_what_a_cut_create_leaves_and_is_adopted(env: Env) -> None:
    """A create that reached S3 but whose tagging did not (a fault, a kill) leaves a bucket of
    our name with no tags, no object and no policy: the next apply tags it and goes on. One
    with a policy is refused as any untagged namesake is."""
    provider = env.provider()
    eu = env.fleet.sites[_site(env, "aws-eu-central-1")]
    s3 = env.client("s3", eu.region)
    bucket = bucket_name(eu.id, env.tag)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": eu.region})
    policy = (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",'
        f' "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{bucket}/*"}}]}}'
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    artifact = Resource(
        ResourceKind.ARTIFACT,
        eu.id,
        "fable-5",
        spec=spec_of(source=env.fleet.models["fable-5"].artifact),
    )
    with pytest.raises(PermanentProviderError, match="not tagged as Sovereign's"):
        provider.apply(eu, ResourceChange(Op.CREATE, None, artifact))
    assert "TagSet" not in _safe(lambda: s3.get_bucket_tagging(Bucket=bucket))
    s3.delete_bucket_policy(Bucket=bucket)
    provider.apply(eu, ResourceChange(Op.CREATE, None, artifact))
    assert artifact in provider.observe(eu)
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"


def _safe(fn: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = fn()
    except Exception:  # noqa: BLE001 - absence of tags is what the caller asserts
        return {}
    return result


def test_withdraw_removes_artifact_versions_and_endpoint(env: Env) -> None:
    provider = env.provider()
    env.converge(provider)
    eu = env.fleet.sites[_site(env, "aws-eu-central-1")]
    # A US withdraw of fable-5 binds the EU AWS site too: it is governed by the US.
    withdrawn = cloud_fleet(
        env.tag,
        artifact_bucket=_source(env),
        directives=[withdraw("us-withdraw", "US", ["fable-5"])],
    )
    assert env.converge(provider, withdrawn) > 0
    assert {r.model for r in provider.observe(eu)} == {"olmo-3"}
    s3 = env.client("s3", eu.region)
    versions = s3.list_object_versions(Bucket=bucket_name(eu.id, env.tag), Prefix="fable-5/")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    sm = env.client("sagemaker", eu.region)
    names = {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}
    assert sagemaker_base_name(eu.id, "fable-5") not in names
    assert not [
        c
        for c in sm.list_endpoint_configs()["EndpointConfigs"]
        if c["EndpointConfigName"].startswith(sagemaker_base_name(eu.id, "fable-5"))
    ]


def _source(env: Env) -> str:
    return env.fleet.models["fable-5"].artifact.split("/")[2]


def test_artifacts_are_never_placed_in_a_forbidden_region(
    converged: tuple[Env, AwsProvider, int],
) -> None:
    env, provider, _ = converged
    eu = env.fleet.sites[_site(env, "aws-eu-central-1")]
    us = env.fleet.sites[_site(env, "aws-us-east-1")]
    # local-9 is "controlled" with no export list: US only.
    assert "local-9" in {r.model for r in provider.observe(us)}
    assert "local-9" not in {r.model for r in provider.observe(eu)}
    for site in (eu, us):
        s3 = env.client("s3", site.region)
        bucket = bucket_name(site.id, env.tag)
        location = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] or "us-east-1"
        assert location == site.region
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert any(k.startswith("local-9/") for k in keys) == (site is us)


def test_one_unreachable_region_fails_alone_and_the_rerun_converges(env: Env) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    provider = env.provider(**{"aws_endpoint_url.eu-central-1": closed})
    failed: dict[str, str] = {}
    for sid, wanted in desired_site_resources(env.fleet, env.aws_sites()).items():
        site = env.fleet.sites[sid]
        try:
            for change in changes_between(wanted, provider.observe(site)):
                provider.apply(site, change)
        except TransientProviderError as exc:
            failed[sid] = exc.message
    eu_id, us_id = _site(env, "aws-eu-central-1"), _site(env, "aws-us-east-1")
    assert set(failed) == {eu_id}
    assert "cannot reach the AWS endpoint" in failed[eu_id] and eu_id in failed[eu_id]
    us = env.fleet.sites[us_id]
    assert provider.observe(us) == desired_site_resources(env.fleet, [us_id])[us_id]
    # The region is back: a fresh run converges the failed site and nothing else moves.
    healed = env.provider()
    assert env.converge(healed) > 0
    assert env.converge(healed) == 0
