"""Frozen core values of a fleet: what the engine, planner and gateway work on.

The YAML is parsed and validated with pydantic at the edge (``fleet.schema``/``fleet.loader``);
after that every layer sees only these immutable values. Audience lists are stored *expanded*:
jurisdiction ids are already replaced by their countries, so matching is set arithmetic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from orchestrator.errors import Problem
from orchestrator.fleet.windows import ChangeWindows

ALL_MODELS = "*"


class Action(StrEnum):
    SUSPEND = "suspend"
    WITHDRAW = "withdraw"
    # only ends what it supersedes (docs/fleet-format.md): names no model, matches no one
    LIFT = "lift"
    # changes who speaks for its jurisdiction (the pinned authority set), nothing else: names
    # no model, matches no one (docs/fleet-format.md, rotating an authority set)
    ROTATE = "rotate"


class Unlisted(StrEnum):
    DENY = "deny"
    ANY = "any"


class ProviderName(StrEnum):
    """The kinds of site a fleet may declare: the one list (the schema, the region tables and
    the provider registry read it)."""

    AWS = "aws"
    GCP = "gcp"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Authority:
    id: str
    public_key: bytes  # raw 32-byte Ed25519 public key


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    jurisdiction: str  # the owner: the profile that declares the site
    provider: ProviderName
    region: str
    country: str
    operator: str
    governed_by: frozenset[str]  # extra jurisdictions, as written
    # whose directives bind this site: ``governing_set`` (owner, governed_by, the law of the
    # soil); a ``Fleet`` always holds its sites with this set computed, whatever was passed
    governing: frozenset[str]
    capacity: int | None = None
    endpoint: str | None = None
    instance_type: str | None = None  # provider-specific serving size (aws: SageMaker type)
    instance_count: int = 1


def governing_set(site: Site, country_home: Mapping[str, str]) -> frozenset[str]:
    """The jurisdictions whose directives bind ``site``: the one definition (docs/decisions.md,
    "the law of the soil").

    Its owner (the profile that declares it), its ``governed_by``, and the jurisdiction whose
    ``countries`` contain the site's ``country``: the soil binds every site on it, whoever
    declares it, so a profile cannot move a site out of another jurisdiction's reach by
    declaring it itself. ``country_home`` maps a country to its jurisdiction
    (``Fleet.country_home``).
    """
    soil = country_home.get(site.country)
    out = {site.jurisdiction, *site.governed_by}
    if soil is not None:
        out.add(soil)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    id: str
    name: str
    countries: frozenset[str]
    authorities: tuple[Authority, ...]
    directive_threshold: int
    process_in: frozenset[str]  # residency.process_in
    export: Mapping[str, frozenset[str]]  # classification -> jurisdictions allowed besides origin
    models: frozenset[str]
    sites: tuple[str, ...]  # ids of the sites this profile declares, in file order
    failover: tuple[str, ...]
    min_sites_per_model: int
    source: str  # file the profile came from, relative to the fleet root
    changes: ChangeWindows | None = None  # change windows (fleet.windows); None: always open

    def authority(self, authority_id: str) -> Authority | None:
        for a in self.authorities:
            if a.id == authority_id:
                return a
        return None


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    origin: str
    export_control: str  # classification label; "open" when omitted
    artifact: str  # one source, or mirrors as a JSON list (``fleet.artifacts.artifact_spec``)


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a suspend reaches. ``None`` for a predicate means "not constrained".

    All sets hold ISO country codes (jurisdiction ids already expanded).
    """

    nationality_in: frozenset[str] | None = None
    nationality_not_in: frozenset[str] | None = None
    residency_in: frozenset[str] | None = None
    residency_not_in: frozenset[str] | None = None
    except_groups: frozenset[str] = frozenset()


EVERYONE = Audience()


@dataclass(frozen=True, slots=True)
class Directive:
    id: str
    jurisdiction: str
    issuer: str
    reference: str
    action: Action
    models: frozenset[str]  # may contain ALL_MODELS
    audience: Audience  # EVERYONE for withdraw or an omitted audience
    effective: datetime  # timezone-aware, UTC
    expires: datetime | None
    supersedes: str | None
    source: str  # file, relative to the fleet root
    sha256: str  # hex digest of the exact file bytes that were verified
    signers: tuple[str, ...] = ()  # authority ids whose signatures verified

    def names(self, model_id: str) -> bool:
        return ALL_MODELS in self.models or model_id in self.models


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """Optional Route 53 geolocation routing (fleet.yaml ``dns``)."""

    hosted_zone_id: str
    domain: str


@dataclass(frozen=True, slots=True)
class Rollout:
    """fleet.yaml ``rollout``: configuration changes of a model go wave by wave, each wave
    after the earlier ones were observed healthy for ``healthy_for`` (planning.deferral)."""

    waves: tuple[tuple[str, ...], ...]
    healthy_for: timedelta

    def wave_of(self, jurisdiction: str) -> int:
        """0-based wave of a jurisdiction; the unlisted ones form a last wave."""
        for i, wave in enumerate(self.waves):
            if jurisdiction in wave:
                return i
        return len(self.waves)

    def describe_wave(self, index: int) -> str:
        """``wave 2 (UK, IN)``, or ``the last wave (every jurisdiction not listed)``."""
        if index < len(self.waves):
            return f"wave {index + 1} ({', '.join(self.waves[index])})"
        return f"wave {index + 1} (the jurisdictions no wave lists)"


@dataclass(frozen=True, slots=True)
class FleetSettings:
    unlisted_countries: Unlisted = Unlisted.DENY
    dns: DnsSettings | None = None
    attestors: tuple[Attestor, ...] = ()
    rollout: Rollout | None = None

    def attestor(self, attestor_id: str) -> Attestor | None:
        return next((a for a in self.attestors if a.id == attestor_id), None)


@dataclass(frozen=True, slots=True)
class Attestor:
    """Someone accountable who vouches for a tenant's people (``fleet.yaml`` ``attestors``)."""

    id: str
    public_key: bytes  # raw Ed25519


@dataclass(frozen=True)
class Tenant:
    """An organisation whose people's attributes an attestor signed (``tenants/NAME.yaml``).

    Only tenants whose signature verified are in ``Fleet.tenants``; an expired one stays there
    (it is refused at the time of each request, docs/identity.md).
    """

    id: str
    attested_by: str
    reference: str
    residency: str
    nationalities: frozenset[str]
    groups: frozenset[str]
    expires: datetime
    source: str  # fleet-relative path
    sha256: str  # of the exact file bytes that were signed

    def expired(self, at: datetime) -> bool:
        return at >= self.expires


def _frozen(d: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(d))


_DERIVED = b"sovereign fleet with directives v1\n"


def _instant(t: datetime | None) -> str:
    return "-" if t is None else t.isoformat()


def _sorted(values: Iterable[str] | None) -> str:
    return "-" if values is None else ",".join(sorted(values))


def _directive_line(d: Directive) -> str:
    a = d.audience
    return "\0".join(
        (
            d.id,
            d.jurisdiction,
            d.issuer,
            d.action.value,
            _sorted(d.models),
            _sorted(a.nationality_in),
            _sorted(a.nationality_not_in),
            _sorted(a.residency_in),
            _sorted(a.residency_not_in),
            _sorted(a.except_groups),
            _instant(d.effective),
            _instant(d.expires),
            d.supersedes or "-",
            d.sha256,
        )
    )


def derived_digest(base: str, directives: Mapping[str, Directive]) -> str:
    """The digest of the fleet ``base`` with its directives replaced by ``directives``."""
    h = hashlib.sha256(_DERIVED)
    h.update(base.encode("ascii"))
    for key in sorted(directives):
        h.update(b"\n")
        h.update(key.encode("utf-8"))
        h.update(b"\0")
        h.update(_directive_line(directives[key]).encode("utf-8"))
    return h.hexdigest()


@dataclass(frozen=True)
class Fleet:
    """A whole validated fleet. Mappings are read-only views keyed by id."""

    jurisdictions: Mapping[str, Jurisdiction]
    sites: Mapping[str, Site]
    models: Mapping[str, Model]
    directives: Mapping[str, Directive]
    settings: FleetSettings = field(default_factory=FleetSettings)
    # country code -> jurisdiction id, derived from the profiles' countries
    country_home: Mapping[str, str] = field(default_factory=dict)
    # fleet.digest.fleet_digest of the input files, so plans, the state and the gateway can
    # name what they saw ("" for a fleet built in memory)
    digest: str = ""
    # tenants whose attestation verified; one that does not verify is not here (its keys are
    # refused) and is listed in ``tenant_problems`` for ``validate`` (docs/identity.md)
    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    tenant_problems: tuple[Problem, ...] = ()

    def __post_init__(self) -> None:
        for name in ("jurisdictions", "sites", "models", "directives", "country_home", "tenants"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))
        if not self.country_home:
            home = {c: j.id for j in self.jurisdictions.values() for c in j.countries}
            object.__setattr__(self, "country_home", MappingProxyType(home))
        # Every layer reads ``Site.governing``; it is computed here, once, for every fleet
        # however it was built (the loader, a test strategy, a benchmark).
        sites = self.sites
        if any(s.governing != governing_set(s, self.country_home) for s in sites.values()):
            fixed = {
                k: replace(s, governing=governing_set(s, self.country_home))
                for k, s in sites.items()
            }
            object.__setattr__(self, "sites", MappingProxyType(fixed))

    def home_of(self, country: str) -> str | None:
        return self.country_home.get(country)

    def owner_of(self, site_id: str) -> Jurisdiction:
        return self.jurisdictions[self.sites[site_id].jurisdiction]

    def with_directives(self, directives: Mapping[str, Directive]) -> Fleet:
        """The same fleet with another directive set (for impact what-ifs and tests).

        Another directive set is another fleet, so it gets another digest (derived, never
        equal to the digest of any files); the same directive set keeps this one.
        """
        digest = self.digest
        if digest and dict(directives) != dict(self.directives):
            digest = derived_digest(digest, directives)
        return Fleet(
            jurisdictions=self.jurisdictions,
            sites=self.sites,
            models=self.models,
            directives=directives,
            settings=self.settings,
            country_home=self.country_home,
            digest=digest,
            tenants=self.tenants,
            tenant_problems=self.tenant_problems,
        )
