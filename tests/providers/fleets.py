"""Small fleets built directly from the frozen values, for provider tests.

Each call gets a unique tag appended to the site ids, so tests sharing one moto / fake-gcs
server never see each other's buckets or endpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from orchestrator.fleet.model import (
    Action,
    Audience,
    Directive,
    DnsSettings,
    Fleet,
    FleetSettings,
    Jurisdiction,
    Model,
    Site,
    Unlisted,
)
from orchestrator.planning.desired import desired_pairs, resources_for_pair
from orchestrator.planning.diff import diff
from orchestrator.providers.base import Op, Resource, ResourceChange, ResourceKind

T0 = datetime.fromisoformat("2026-07-01T00:00:00+00:00")
MODEL_IDS = ("fable-5", "local-9", "olmo-3")
WEIGHTS = {"config.json": b'{"layers": 2}', "model-00001.safetensors": b"\x00" * 2048}


def unique() -> str:
    return uuid.uuid4().hex[:6]


def site(
    site_id: str,
    jurisdiction: str,
    provider: str,
    region: str,
    country: str,
    *,
    governed_by: Iterable[str] = (),
    instance_type: str | None = None,
    instance_count: int = 1,
    endpoint: str | None = None,
) -> Site:
    extra = frozenset(governed_by)
    return Site(
        id=site_id,
        jurisdiction=jurisdiction,
        provider=provider,
        region=region,
        country=country,
        operator=f"acme-{jurisdiction.lower()}",
        governed_by=extra,
        governing=extra | {jurisdiction},
        instance_type=instance_type,
        instance_count=instance_count,
        endpoint=endpoint,
    )


def jurisdiction(
    jid: str,
    countries: Iterable[str],
    sites: Iterable[Site],
    models: Iterable[str],
    *,
    process_in: Iterable[str] | None = None,
    export: dict[str, Iterable[str]] | None = None,
    failover: Iterable[str] | None = None,
) -> Jurisdiction:
    site_ids = tuple(s.id for s in sites)
    return Jurisdiction(
        id=jid,
        name=jid,
        countries=frozenset(countries),
        authorities=(),
        directive_threshold=1,
        process_in=frozenset(process_in or {jid}),
        export={k: frozenset(v) for k, v in (export or {}).items()},
        models=frozenset(models),
        sites=site_ids,
        failover=tuple(failover) if failover is not None else site_ids,
        min_sites_per_model=1,
        source=f"{jid.lower()}.yaml",
    )


def cloud_fleet(
    tag: str,
    *,
    artifact_bucket: str = "acme-models",
    gcs_source: str | None = None,
    dns: DnsSettings | None = None,
    unlisted: Unlisted = Unlisted.DENY,
    directives: Iterable[Directive] = (),
) -> Fleet:
    """US and EU on AWS and GCP, like the example fleet. ``fable-5`` (US, restricted) may be
    exported to EU; ``local-9`` (US, "controlled": no export list) must stay in the US.
    The EU's AWS site is also governed by the US (like the example JP site)."""
    us_aws = site(
        f"aws-us-east-1-{tag}",
        "US",
        "aws",
        "us-east-1",
        "US",
        instance_type="ml.g4dn.xlarge",
        endpoint="https://us.inference.example.com",
    )
    us_gcp = site(f"gcp-us-central1-{tag}", "US", "gcp", "us-central1", "US")
    eu_aws = site(
        f"aws-eu-central-1-{tag}",
        "EU",
        "aws",
        "eu-central-1",
        "DE",
        governed_by=["US"],
        instance_count=2,
    )
    eu_gcp = site(f"gcp-europe-west4-{tag}", "EU", "gcp", "europe-west4", "NL")
    models = {
        "fable-5": Model("fable-5", "US", "restricted", f"s3://{artifact_bucket}/fable-5/"),
        "local-9": Model("local-9", "US", "controlled", f"s3://{artifact_bucket}/local-9/"),
        "olmo-3": Model("olmo-3", "US", "open", gcs_source or f"s3://{artifact_bucket}/olmo-3/"),
    }
    us = jurisdiction("US", ["US"], [us_aws, us_gcp], models, export={"restricted": ["EU"]})
    eu = jurisdiction("EU", ["DE", "FR", "NL"], [eu_aws, eu_gcp], models)
    return Fleet(
        jurisdictions={"US": us, "EU": eu},
        sites={s.id: s for s in (us_aws, us_gcp, eu_aws, eu_gcp)},
        models=models,
        directives={d.id: d for d in directives},
        settings=FleetSettings(unlisted_countries=unlisted, dns=dns),
    )


def withdraw(directive_id: str, jurisdiction_id: str, models: Iterable[str]) -> Directive:
    return Directive(
        id=directive_id,
        jurisdiction=jurisdiction_id,
        issuer="authority",
        reference="test",
        action=Action.WITHDRAW,
        models=frozenset(models),
        audience=Audience(),
        effective=T0,
        expires=None,
        supersedes=None,
        source=f"directives/{directive_id}.yaml",
        sha256="0",
    )


def desired_site_resources(fleet: Fleet, site_ids: Iterable[str]) -> dict[str, frozenset[Resource]]:
    """Deployments and artifacts per site, as the planner desires them at ``T0``."""
    pairs = desired_pairs(fleet, T0)
    return {
        sid: frozenset(r for m, s in pairs if s == sid for r in resources_for_pair(fleet, m, s))
        for sid in site_ids
    }


def changes_between(
    desired: frozenset[Resource], actual: frozenset[Resource]
) -> list[ResourceChange]:
    """The planner's diff as provider changes, artifacts before deployments on create and
    deployments before artifacts on delete (the order the reconciler applies them in)."""
    kind_order = {ResourceKind.ARTIFACT: 0, ResourceKind.DEPLOYMENT: 1, ResourceKind.ROUTE: 2}

    def order(c: ResourceChange) -> tuple[int, int, tuple[str, str, str, str]]:
        k = kind_order[c.resource.kind]
        head = (1, -k) if c.op is Op.DELETE else (0, k)
        return (*head, c.resource.identity)

    return sorted((c.to_resource_change() for c in diff(desired, actual)), key=order)
