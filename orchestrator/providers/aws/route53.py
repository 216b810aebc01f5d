"""Route 53 geolocation records for ``<model>.<domain>``: the ``route53`` route provider.

Route 53 records cannot be tagged, so ownership is the set identifier: Sovereign's records are
exactly those whose set identifier is ``sovereign:<model>:<country>`` (``*`` for the default
location); ``observe_routes`` reads only those and ``apply_route`` changes only those. Each
record is a CNAME (an A record when the value is an IP address) plus a TXT companion with the
same name and set identifier holding ``sovereign-site=<site id>``, so observe can report which
site a record stands for. Both are written in one change batch, which Route 53 applies
atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from orchestrator.adaptors.aws import call, pages
from orchestrator.errors import PermanentProviderError
from orchestrator.providers.aws.session import AwsClients, ProviderOptions
from orchestrator.providers.base import (
    Op,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
    spec_of,
)

if TYPE_CHECKING:
    from types_boto3_route53 import Route53Client
    from types_boto3_route53.type_defs import ChangeTypeDef

SET_PREFIX = "sovereign:"
SITE_TXT_PREFIX = "sovereign-site="
TTL_OPTION = "dns_ttl"
DEFAULT_TTL = 60
ROUTE53_REGION = "us-east-1"  # Route 53 is global; its API lives in us-east-1


def set_identifier(model_id: str, key: str) -> str:
    return f"{SET_PREFIX}{model_id}:{key}"


def parse_set_identifier(value: str) -> tuple[str, str] | None:
    """``sovereign:<model>:<country>`` -> (model, country); None for anyone else's record."""
    if not value.startswith(SET_PREFIX):
        return None
    model, sep, key = value[len(SET_PREFIX) :].rpartition(":")
    return (model, key) if sep and model and key else None


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _name_type(rrset: Mapping[str, Any]) -> tuple[str, str]:
    return str(rrset["Name"]).rstrip(".").lower(), str(rrset["Type"])


def _unquote_txt(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


class Route53Provider:
    """``RouteProvider`` for targets ``dns:<hosted-zone-id>``."""

    name = "route53"

    def __init__(self, context: ProviderContext) -> None:
        options = ProviderOptions(context.options)
        self._clients = AwsClients(options)
        self._ttl = int(options.get(TTL_OPTION, DEFAULT_TTL))

    def _route53(self) -> Route53Client:
        return self._clients.route53(ROUTE53_REGION)

    @staticmethod
    def _zone(target: str) -> str:
        prefix, sep, zone = target.partition(":")
        if prefix != "dns" or not sep or not zone:
            raise PermanentProviderError(
                f"route target {target!r} is not dns:<hosted-zone-id>",
                hint="fleet.yaml dns.hosted_zone_id names the zone, e.g. Z0123456789ABCDEFGHIJ",
            )
        return zone

    def _ours(self, target: str) -> list[dict[str, Any]]:
        """Every raw record set of the zone whose set identifier is Sovereign's."""
        zone = self._zone(target)
        found = pages(
            target,
            "route53:ListResourceRecordSets",
            self._route53(),
            "list_resource_record_sets",
            HostedZoneId=zone,
        )
        return [
            rrset
            for page in found or []  # a missing zone holds nothing of ours: drift, not an error
            for rrset in page.get("ResourceRecordSets", [])
            if parse_set_identifier(rrset.get("SetIdentifier", "")) is not None
        ]

    def observe_routes(self, target: str) -> frozenset[Resource]:
        grouped: dict[str, dict[str, dict[str, Any]]] = {}
        for rrset in self._ours(target):
            grouped.setdefault(rrset["SetIdentifier"], {})[rrset["Type"]] = rrset
        found: set[Resource] = set()
        for set_id, by_type in grouped.items():
            parsed = parse_set_identifier(set_id)
            value_set = by_type.get("CNAME") or by_type.get("A")
            if parsed is None or value_set is None:
                continue  # a lone TXT companion is not a route; the next apply rewrites it
            model, key = parsed
            txt = by_type.get("TXT", {}).get("ResourceRecords", [{}])[0].get("Value", "")
            site = _unquote_txt(txt).removeprefix(SITE_TXT_PREFIX) if txt else ""
            values = [r["Value"] for r in value_set.get("ResourceRecords", [])]
            found.add(
                Resource(
                    ResourceKind.ROUTE,
                    target,
                    model,
                    key=key,
                    spec=spec_of(
                        site=site,
                        name=value_set["Name"].rstrip(".").lower(),
                        value=values[0].rstrip(".").lower() if values else "",
                    ),
                )
            )
        return frozenset(found)

    def _record_sets(self, resource: Resource) -> list[dict[str, Any]]:
        spec = resource.spec_dict()
        missing = [k for k in ("site", "name", "value") if not spec.get(k)]
        if missing:
            raise PermanentProviderError(
                f"{resource.address}: route spec lacks {', '.join(missing)}"
            )
        set_id = set_identifier(resource.model, resource.key)
        geo = {"CountryCode": resource.key}
        common: Mapping[str, Any] = {
            "Name": spec["name"],
            "SetIdentifier": set_id,
            "GeoLocation": geo,
            "TTL": self._ttl,
        }
        kind = "A" if _is_ip(spec["value"]) else "CNAME"
        return [
            {**common, "Type": kind, "ResourceRecords": [{"Value": spec["value"]}]},
            {
                **common,
                "Type": "TXT",
                "ResourceRecords": [{"Value": f'"{SITE_TXT_PREFIX}{spec["site"]}"'}],
            },
        ]

    def apply_route(self, target: str, change: ResourceChange) -> None:
        resource = change.resource
        if resource.kind is not ResourceKind.ROUTE or resource.target != target:
            raise PermanentProviderError(
                f"the route53 provider manages ROUTE resources of {target}, not {resource.address}"
            )
        wanted = [] if change.op is Op.DELETE else self._record_sets(resource)
        keep = {_name_type(r) for r in wanted}
        set_id = set_identifier(resource.model, resource.key)
        stale = [
            r
            for r in self._ours(target)
            if r["SetIdentifier"] == set_id and _name_type(r) not in keep
        ]
        # the record sets are built and listed as plain dicts (their shape is Route 53's own)
        changes = cast(
            "list[ChangeTypeDef]",
            [{"Action": "DELETE", "ResourceRecordSet": r} for r in stale]
            + [{"Action": "UPSERT", "ResourceRecordSet": r} for r in wanted],
        )
        if not changes:
            return  # deleting what is already gone
        call(
            target,
            "route53:ChangeResourceRecordSets",
            self._route53().change_resource_record_sets,
            HostedZoneId=self._zone(target),
            ChangeBatch={
                "Comment": f"sovereign {change.op.value} {resource.address}",
                "Changes": changes,
            },
        )
