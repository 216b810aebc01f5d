"""DNS geolocation records: the desired set (pure, property-tested against the reference
rules) and the Route 53 provider against moto over real HTTP."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.model import Action, Audience, Directive, DnsSettings, Fleet, Unlisted
from orchestrator.planning.dns import DEFAULT_KEY, desired_dns_records
from orchestrator.policy.principal import Principal
from orchestrator.policy.rules import route
from orchestrator.providers import create_provider
from orchestrator.providers.aws.route53 import Route53Provider
from orchestrator.providers.base import (
    Op,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
    RouteProvider,
    spec_of,
)
from tests.providers.fleets import T0, changes_between, cloud_fleet, unique
from tests.strategies import fleets, instants, principals

DOMAIN = "inference.acme.example"


def _records(records: frozenset[Resource]) -> dict[tuple[str, str], dict[str, str]]:
    return {(r.model, r.key): r.spec_dict() for r in records}


def _suspend(directive_id: str, models: list[str], audience: Audience) -> Directive:
    return Directive(
        id=directive_id,
        jurisdiction="US",
        issuer="us-commerce",
        reference="test",
        action=Action.SUSPEND,
        models=frozenset(models),
        audience=audience,
        effective=T0,
        expires=None,
        supersedes=None,
        source="d.yaml",
        sha256="0",
    )


def test_no_dns_settings_means_no_records() -> None:
    assert desired_dns_records(cloud_fleet("t"), T0) == frozenset()


def test_each_country_points_at_the_first_site_of_its_fail_closed_route() -> None:
    fleet = cloud_fleet("t", dns=DnsSettings("Z1", DOMAIN + "."))
    records = _records(desired_dns_records(fleet, T0))
    assert records[("fable-5", "US")] == {
        "site": "aws-us-east-1-t",
        "name": f"fable-5.{DOMAIN}",
        "value": "us.inference.example.com",
    }  # the site's endpoint host
    assert records[("fable-5", "DE")] == {
        "site": "aws-eu-central-1-t",
        "name": f"fable-5.{DOMAIN}",
        "value": f"aws-eu-central-1-t.{DOMAIN}",
    }  # derived when the site has no endpoint
    # local-9 may not leave the US: Europeans get no record, and there is no default record.
    assert {k for k in records if k[0] == "local-9"} == {("local-9", "US")}
    assert not [k for k in records if k[1] == DEFAULT_KEY]
    assert {r.target for r in desired_dns_records(fleet, T0)} == {"dns:Z1"}


def test_a_suspension_for_unknown_nationality_moves_the_record() -> None:
    # Suspended for non-US nationals: unknown nationality matches, so DE goes to the EU site
    # that the US does not govern.
    directive = _suspend("us-doc", ["fable-5"], Audience(nationality_not_in=frozenset({"US"})))
    fleet = cloud_fleet("t", dns=DnsSettings("Z1", DOMAIN), directives=[directive])
    records = _records(desired_dns_records(fleet, T0))
    assert records[("fable-5", "DE")]["site"] == "gcp-europe-west4-t"


def test_the_default_record_exists_only_when_unlisted_countries_may_be_served() -> None:
    fleet = cloud_fleet("t", dns=DnsSettings("Z1", DOMAIN), unlisted=Unlisted.ANY)
    records = _records(desired_dns_records(fleet, T0))
    assert records[("fable-5", DEFAULT_KEY)]["site"] == "aws-eu-central-1-t"  # by site id
    # Europeans have no local-9 record; a default would answer them with a US site they are
    # refused, so there is none.
    assert ("local-9", DEFAULT_KEY) not in records


def test_the_default_record_respects_residency_predicates_on_unlisted_countries() -> None:
    # Suspended for people located in MX (unlisted): the default record must not answer MX
    # with a site the suspension covers.
    directive = _suspend("us-mx", ["olmo-3"], Audience(residency_in=frozenset({"MX"})))
    fleet = cloud_fleet(
        "t", dns=DnsSettings("Z1", DOMAIN), unlisted=Unlisted.ANY, directives=[directive]
    )
    site = _records(desired_dns_records(fleet, T0))[("olmo-3", DEFAULT_KEY)]["site"]
    assert site in route(fleet, "olmo-3", Principal("MX"), T0)
    assert site == "gcp-europe-west4-t"  # the first site the US does not govern


@settings(max_examples=75, deadline=None)
@given(fleet=fleets(), at=instants(), people=st.lists(principals(), min_size=1, max_size=8))
def test_dns_never_points_anyone_at_a_site_the_engine_refuses(
    fleet: Fleet, at: datetime, people: list[Principal]
) -> None:
    fleet = dataclasses.replace(
        fleet, settings=dataclasses.replace(fleet.settings, dns=DnsSettings("Z9", DOMAIN))
    )
    records = {(r.model, r.key): r.spec_dict()["site"] for r in desired_dns_records(fleet, at)}
    for model in fleet.models:
        for person in people:
            # Route 53 answers a country without its own record from the default record.
            site = records.get((model, person.residency), records.get((model, DEFAULT_KEY)))
            if site is not None:
                assert site in route(fleet, model, person, at), (model, person, site)
        for country in fleet.country_home:
            fail_closed = route(fleet, model, Principal(country), at)
            assert records.get((model, country)) == (fail_closed[0] if fail_closed else None)
    if fleet.settings.unlisted_countries is Unlisted.DENY:
        assert not [k for k in records if k[1] == DEFAULT_KEY]


# -- Route 53 over moto ---------------------------------------------------------------------


@pytest.fixture
def zone(moto_url: str) -> tuple[str, str]:
    """A fresh hosted zone: (zone id, domain)."""
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1")
    domain = f"{unique()}.{DOMAIN}"
    created = r53.create_hosted_zone(Name=domain, CallerReference=unique())
    return created["HostedZone"]["Id"].split("/")[-1], domain


def _provider(moto_url: str, tmp_path: Path) -> Route53Provider:
    context = ProviderContext(state_dir=tmp_path, options={"aws_endpoint_url": moto_url})
    provider = create_provider("route53", context)
    assert isinstance(provider, Route53Provider) and isinstance(provider, RouteProvider)
    return provider


def _raw(moto_url: str, zone_id: str) -> list[dict[str, Any]]:
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1")
    sets: list[dict[str, Any]] = r53.list_resource_record_sets(HostedZoneId=zone_id)[
        "ResourceRecordSets"
    ]
    return sets


def _converge(provider: Route53Provider, desired: frozenset[Resource], target: str) -> int:
    changes = changes_between(desired, provider.observe_routes(target))
    for change in changes:
        provider.apply_route(target, change)
    return len(changes)


def test_route53_records_converge_and_leave_foreign_records_alone(
    moto_url: str, zone: tuple[str, str], tmp_path: Path
) -> None:
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1")
    zone_id, domain = zone
    foreign = [
        {
            "Name": f"fable-5.{domain}",
            "Type": "CNAME",
            "SetIdentifier": "someone-else:DE",
            "GeoLocation": {"CountryCode": "FR"},
            "TTL": 300,
            "ResourceRecords": [{"Value": "elsewhere.example.com"}],
        },
        {
            "Name": f"www.{domain}",
            "Type": "A",
            "TTL": 300,
            "ResourceRecords": [{"Value": "192.0.2.1"}],
        },
    ]
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": r} for r in foreign]},
    )
    provider = _provider(moto_url, tmp_path)
    target = f"dns:{zone_id}"
    fleet = cloud_fleet("t", dns=DnsSettings(zone_id, domain), unlisted=Unlisted.ANY)
    desired = desired_dns_records(fleet, T0)
    assert provider.observe_routes(target) == frozenset()

    assert _converge(provider, desired, target) == len(desired)
    assert provider.observe_routes(target) == desired
    assert _converge(provider, desired, target) == 0
    ours = [
        r for r in _raw(moto_url, zone_id) if r.get("SetIdentifier", "").startswith("sovereign:")
    ]
    assert {(r["SetIdentifier"], r["Type"]) for r in ours} == {
        (f"sovereign:{r.model}:{r.key}", t) for r in desired for t in ("CNAME", "TXT")
    }
    default = next(
        r for r in ours if r["SetIdentifier"] == "sovereign:fable-5:*" and r["Type"] == "CNAME"
    )
    assert default["GeoLocation"] == {"CountryCode": "*"}

    # A directive moves Germany elsewhere: one update, stale values replaced.
    directive = _suspend("us-doc", ["fable-5"], Audience(nationality_not_in=frozenset({"US"})))
    moved = desired_dns_records(
        cloud_fleet(
            "t", dns=DnsSettings(zone_id, domain), unlisted=Unlisted.ANY, directives=[directive]
        ),
        T0,
    )
    assert _converge(provider, moved, target) > 0
    assert provider.observe_routes(target) == moved
    de = [r for r in _raw(moto_url, zone_id) if r.get("SetIdentifier") == "sovereign:fable-5:DE"]
    assert sorted(r["ResourceRecords"][0]["Value"].strip('"') for r in de) == [
        f"gcp-europe-west4-t.{domain}",
        "sovereign-site=gcp-europe-west4-t",
    ]

    # Drift: a record deleted behind our back is observed missing, and recreated.
    cname = next(r for r in de if r["Type"] == "CNAME")
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": cname}]},
    )
    assert ("fable-5", "DE") not in {(r.model, r.key) for r in provider.observe_routes(target)}
    assert _converge(provider, moved, target) == 1

    # Withdrawal of DNS altogether deletes every one of ours, and nothing else.
    assert _converge(provider, frozenset(), target) == len(moved)
    left = _raw(moto_url, zone_id)
    assert not [r for r in left if r.get("SetIdentifier", "").startswith("sovereign:")]
    for record in foreign:
        assert any(
            r["Name"].rstrip(".") == record["Name"] and r["Type"] == record["Type"] for r in left
        )
    # Deleting what is already gone is a no-op.
    gone = next(iter(moved))
    provider.apply_route(target, ResourceChange(Op.DELETE, gone, None))


def test_an_ip_address_value_becomes_an_a_record(
    moto_url: str, zone: tuple[str, str], tmp_path: Path
) -> None:
    zone_id, domain = zone
    provider = _provider(moto_url, tmp_path)
    target = f"dns:{zone_id}"
    record = Resource(
        ResourceKind.ROUTE,
        target,
        "olmo-3",
        key="JP",
        spec=spec_of(site="s1", name=f"olmo-3.{domain}", value="192.0.2.7"),
    )
    provider.apply_route(target, ResourceChange(Op.CREATE, None, record))
    assert provider.observe_routes(target) == {record}
    types = {r["Type"] for r in _raw(moto_url, zone_id) if r.get("SetIdentifier")}
    assert types == {"A", "TXT"}
