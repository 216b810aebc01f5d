"""The Pulumi program under ``pulumi.runtime.set_mocks``: a jurisdiction's stack declares its
own sites only, in their regions, with the providers' names and tags."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.components.jurisdiction import JurisdictionStack, UnknownJurisdictionError
from infra.components.settings import StackSettings
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from orchestrator.planning.desired import desired_pairs
from orchestrator.providers.aws.naming import bucket_name, sagemaker_base_name
from orchestrator.providers.gcp.storage import gcs_bucket_name

REGIONS = Path(__file__).resolve().parents[2] / "regions"
AT = datetime(2026, 7, 1, tzinfo=UTC)


class Recorder(pulumi.runtime.Mocks):
    """Records every resource the program declares; the cloud is never contacted."""

    def __init__(self) -> None:
        self.resources: list[tuple[str, str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append((args.typ, args.name, dict(args.inputs)))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(REGIONS)


def declare(fleet: Fleet, jurisdiction: str) -> list[tuple[str, str, dict[str, Any]]]:
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, project="sovereign", stack=jurisdiction, preview=False)

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        stack = JurisdictionStack(
            jurisdiction, fleet, at=AT, settings=StackSettings(bucket_suffix="t")
        )
        return pulumi.Output.from_input(stack.bucket_names)

    program()
    return recorder.resources


def _site_of(inputs: dict[str, Any]) -> str | None:
    tags = inputs.get("tags") or {}
    labels = inputs.get("labels") or {}
    return tags.get("sovereign:site") or labels.get("sovereign-site")


@pytest.mark.parametrize("jurisdiction", ["US", "EU", "UK", "JP", "IN"])
def test_a_stack_never_declares_another_jurisdictions_sites(
    fleet: Fleet, jurisdiction: str
) -> None:
    resources = declare(fleet, jurisdiction)
    own = set(fleet.jurisdictions[jurisdiction].sites)
    own_regions = {fleet.sites[s].region for s in own}
    cloud = [(t, n, i) for t, n, i in resources if not t.startswith("sovereign:")]
    assert cloud, "the stack declares something"
    for typ, name, inputs in cloud:
        site = _site_of(inputs)
        if site is not None:
            assert site in own, (typ, name, site)
        region = inputs.get("region") or inputs.get("location")
        if region is not None:
            assert str(region).lower() in own_regions, (typ, name, region)
    declared_buckets = {
        i.get("bucket") or i.get("name")
        for t, _, i in cloud
        if t in {"aws:s3/bucket:Bucket", "gcp:storage/bucket:Bucket"}
    }
    expected = {
        bucket_name(s, "t") if fleet.sites[s].provider == "aws" else gcs_bucket_name(s, "t")
        for s in own
    }
    assert declared_buckets == expected


def test_endpoints_are_exactly_the_desired_deployments_with_provider_names(fleet: Fleet) -> None:
    resources = declare(fleet, "JP")
    endpoints = {i["name"] for t, _, i in resources if t == "aws:sagemaker/endpoint:Endpoint"}
    wanted = {
        sagemaker_base_name(s, m)
        for m, s in desired_pairs(fleet, AT)
        if s in fleet.jurisdictions["JP"].sites and fleet.sites[s].provider == "aws"
    }
    assert endpoints == wanted and wanted
    for typ, _, inputs in resources:
        if typ.startswith("aws:sagemaker/"):
            assert inputs["tags"]["sovereign:managed"] == "true"
            assert inputs["tags"]["sovereign:model"]


def test_gcp_buckets_are_private_and_labelled_in_region(fleet: Fleet) -> None:
    resources = declare(fleet, "EU")
    buckets = [i for t, _, i in resources if t == "gcp:storage/bucket:Bucket"]
    assert buckets
    for inputs in buckets:
        assert inputs["labels"]["sovereign-managed"] == "true"
        assert inputs["publicAccessPrevention"] == "enforced"
        assert inputs["uniformBucketLevelAccess"] is True


def test_a_stack_named_after_no_jurisdiction_is_refused(fleet: Fleet) -> None:
    with pytest.raises(UnknownJurisdictionError, match="US"):
        JurisdictionStack("MARS", fleet, at=AT, settings=StackSettings())
