"""The fleet's file formats as strict pydantic models: the edge where YAML becomes typed data.

Strict mode (no ``"8"`` -> 8 coercion) and ``extra="forbid"`` (a misspelt key is an error, not a
silently ignored setting) follow docs/fleet-format.md: "Unknown keys are errors". Per-field rules
that need no other file (id formats, country codes, key lengths, URLs, timestamps) live here, so
pydantic reports them with the exact field path; rules that relate files live in ``fleet.checks``.
Nothing outside the fleet package sees these classes: ``fleet.loader`` turns them into the
frozen values of ``fleet.model``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    model_validator,
)

from orchestrator.fleet.artifacts import source_problem
from orchestrator.fleet.countries import is_country, suggest_country
from orchestrator.fleet.model import ProviderName
from orchestrator.fleet.windows import cron_problem, duration_problem, zone_problem

JURISDICTION_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]*$")
SITE_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
NAME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _jurisdiction_id(value: str) -> str:
    if not JURISDICTION_ID.match(value):
        raise ValueError(f"'{value}' is not a jurisdiction id: use A-Z, 0-9 and '-', e.g. EU")
    return value


def _site_id(value: str) -> str:
    if not SITE_ID.match(value):
        raise ValueError(
            f"'{value}' is not a site id: use a-z, 0-9 and '-', at most 63 characters, "
            "starting and ending with a letter or digit, e.g. aws-eu-central-1"
        )
    return value


def _name_id(value: str) -> str:
    if not NAME_ID.match(value):
        raise ValueError(
            f"'{value}' is not a valid id: use letters, digits, '.', '_' and '-', starting with "
            "a letter or digit, e.g. fable-5"
        )
    return value


def _country(value: str) -> str:
    if not is_country(value):
        suggestion = suggest_country(value)
        raise ValueError(
            f"'{value}' is not an ISO 3166-1 alpha-2 country code (two upper-case letters, "
            "e.g. DE, US, GB)" + (f"; did you mean {suggestion}?" if suggestion else "")
        )
    return value


def _public_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "not valid base64; expected the base64 of a raw 32-byte Ed25519 public key "
            "(sovereign keygen prints one)"
        ) from None
    if len(raw) != 32:
        raise ValueError(
            f"decodes to {len(raw)} bytes; an Ed25519 public key is exactly 32 bytes "
            "(sovereign keygen prints one)"
        )
    return value


def _http_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"'{value}' is not an http(s) URL, e.g. https://eu.inference.example.com")
    return value


def _artifact(value: object) -> tuple[str, ...]:
    """One source or a non-empty list of mirrors, each an artifact source (docs/fleet-format.md)."""
    if isinstance(value, str):
        problem = source_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return (value,)
    if not isinstance(value, list) or not value:
        raise ValueError(
            "expected a source URL or a non-empty list of mirror URLs, e.g. "
            "s3://acme-models/fable-5/ or [s3://acme-models/fable-5/, gs://acme-eu/fable-5/]"
        )
    for i, mirror in enumerate(value):
        if not isinstance(mirror, str):
            raise ValueError(f"mirror {i + 1} is not a string")
        problem = source_problem(mirror)
        if problem is not None:
            raise ValueError(f"mirror {i + 1}: {problem}")
    return tuple(value)


def _timestamp(value: object) -> object:
    """Accept a YAML timestamp or an ISO 8601 string; demand a timezone; normalise to UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"'{value}' is not an ISO 8601 timestamp; write e.g. 2026-06-12T00:00:00Z"
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError(
            f"{value} is a date without a time; write a timezone-aware timestamp, "
            f"e.g. {value.isoformat()}T00:00:00Z"
        )
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{value.isoformat()} has no timezone; an instant must be unambiguous, "
                "write e.g. 2026-06-12T00:00:00Z (UTC) or 2026-06-12T02:00:00+02:00"
            )
        try:
            return value.astimezone(UTC)
        except OverflowError:
            # an offset that moves the first or last representable day out of range
            raise ValueError(
                f"{value.isoformat()} is out of the range of representable instants once "
                "converted to UTC; write e.g. 2026-06-12T00:00:00Z"
            ) from None
    return value


def _check(problem_of: Callable[[object], str | None]) -> Callable[[str], str]:
    def check(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return check


JurisdictionId = Annotated[str, AfterValidator(_jurisdiction_id)]
Cron = Annotated[str, AfterValidator(_check(cron_problem))]
Duration = Annotated[str, AfterValidator(_check(duration_problem))]
ZoneName = Annotated[str, AfterValidator(_check(zone_problem))]
SiteId = Annotated[str, AfterValidator(_site_id)]
NameId = Annotated[str, AfterValidator(_name_id)]
Country = Annotated[str, AfterValidator(_country)]
NonEmpty = Annotated[str, Field(min_length=1)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class AuthorityDoc(_Strict):
    id: NameId
    public_key: Annotated[str, AfterValidator(_public_key)]


class SiteDoc(_Strict):
    id: SiteId
    provider: Annotated[ProviderName, Field(strict=False)]  # "aws" in YAML is ProviderName.AWS
    region: NonEmpty
    country: Country
    operator: NonEmpty
    governed_by: list[JurisdictionId] = Field(default_factory=list)
    capacity: Annotated[int, Field(ge=0)] | None = None
    endpoint: Annotated[str, AfterValidator(_http_url)] | None = None
    instance_type: NonEmpty | None = None
    instance_count: Annotated[int, Field(ge=1)] = 1


class ResidencyDoc(_Strict):
    process_in: list[JurisdictionId]


class GuaranteesDoc(_Strict):
    min_sites_per_model: Annotated[int, Field(ge=0)] = 1


class WindowDoc(_Strict):
    """One change window (docs/fleet-format.md, "changes"): exactly one of deny/allow."""

    deny: Cron | None = None
    allow: Cron | None = None
    duration: Duration

    @model_validator(mode="after")
    def _one_kind(self) -> WindowDoc:
        if (self.deny is None) == (self.allow is None):
            raise ValueError(
                "a window has exactly one of 'deny' or 'allow' (a cron expression), e.g. "
                "deny: '0 18 * * 5' with duration: 62h"
            )
        return self


class ChangesDoc(_Strict):
    timezone: ZoneName
    windows: list[WindowDoc] = Field(default_factory=list)


class ProfileDoc(_Strict):
    jurisdiction: JurisdictionId
    name: NonEmpty
    countries: Annotated[list[Country], Field(min_length=1)]
    authorities: list[AuthorityDoc] = Field(default_factory=list)
    directive_threshold: int = 1
    residency: ResidencyDoc
    export: dict[NonEmpty, list[JurisdictionId]] = Field(default_factory=dict)
    models: list[NameId] = Field(default_factory=list)
    sites: list[SiteDoc] = Field(default_factory=list)
    failover: list[SiteId] = Field(default_factory=list)
    guarantees: GuaranteesDoc = Field(default_factory=GuaranteesDoc)
    changes: ChangesDoc | None = None


class ModelDoc(_Strict):
    id: NameId
    origin: JurisdictionId
    export_control: NonEmpty = "open"
    # one source, or a list of mirrors (a site takes the first in its own cloud, else the
    # first it can read); always a tuple once validated
    artifact: Annotated[tuple[str, ...], PlainValidator(_artifact)]


class CatalogDoc(_Strict):
    models: list[ModelDoc]


class AudienceDoc(_Strict):
    nationality_in: list[NonEmpty] | None = None
    nationality_not_in: list[NonEmpty] | None = None
    residency_in: list[NonEmpty] | None = None
    residency_not_in: list[NonEmpty] | None = None
    except_groups: list[NonEmpty] = Field(default_factory=list)


class DirectiveDoc(_Strict):
    id: NameId
    jurisdiction: JurisdictionId
    issuer: NameId
    reference: NonEmpty
    action: Literal["suspend", "withdraw", "lift", "rotate"]
    # required for suspend and withdraw, forbidden for lift and rotate (fleet.checks says which)
    models: Annotated[list[NonEmpty], Field(min_length=1)] | None = None
    audience: AudienceDoc | None = None
    effective: Timestamp
    expires: Timestamp | None = None
    supersedes: NameId | None = None
    # rotate only (docs/fleet-format.md, rotating an authority set): the new set, exactly as
    # the jurisdiction's profile now lists it
    authorities: list[AuthorityDoc] | None = None
    directive_threshold: int | None = None


class DnsDoc(_Strict):
    hosted_zone_id: NonEmpty
    domain: NonEmpty


class AttestorDoc(_Strict):
    """Who may attest a tenant's people (docs/identity.md): an id and an Ed25519 public key."""

    id: NameId
    public_key: Annotated[str, AfterValidator(_public_key)]


class RolloutDoc(_Strict):
    """``rollout`` in fleet.yaml (docs/fleet-format.md): waves of jurisdictions, in order."""

    waves: list[Annotated[list[JurisdictionId], Field(min_length=1)]] = Field(default_factory=list)
    healthy_for: Duration = "10m"


class FleetSettingsDoc(_Strict):
    unlisted_countries: Literal["deny", "any"] = "deny"
    dns: DnsDoc | None = None
    attestors: list[AttestorDoc] = Field(default_factory=list)
    rollout: RolloutDoc | None = None
    # the lineage of the one state this fleet is applied with (docs/gitops.md, the state as
    # an anchor): a state of another lineage, or none, is refused by every command
    state_lineage: NonEmpty | None = None


class TenantPrincipalDoc(_Strict):
    residency: Country
    nationalities: list[Country] = Field(default_factory=list)
    groups: list[NonEmpty] = Field(default_factory=list)


class TenantDoc(_Strict):
    """``tenants/NAME.yaml``: who a tenant's requests are judged as, signed by an attestor."""

    id: NameId
    attested_by: NameId
    reference: NonEmpty
    principal: TenantPrincipalDoc
    expires: Timestamp
