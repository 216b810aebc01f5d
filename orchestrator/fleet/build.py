"""Frozen fleet values built from validated schema documents.

The loader decides *whether* a fleet is valid; this module only turns documents that passed every
check into the engine's frozen values (``Fleet``, ``Directive``, ...), expanding jurisdiction ids
in audiences to their countries on the way. Nothing here can fail on valid input.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import timedelta

from orchestrator.fleet.artifacts import artifact_spec
from orchestrator.fleet.checks import ParsedDirective, ParsedProfile
from orchestrator.fleet.model import (
    EVERYONE,
    Action,
    Attestor,
    Audience,
    Authority,
    Directive,
    DnsSettings,
    Fleet,
    FleetSettings,
    Jurisdiction,
    Model,
    Rollout,
    Site,
    Unlisted,
)
from orchestrator.fleet.schema import (
    AudienceDoc,
    CatalogDoc,
    ChangesDoc,
    FleetSettingsDoc,
    RolloutDoc,
)
from orchestrator.fleet.windows import ChangeWindows, Window, WindowKind, parse_duration

__all__ = ["build_audience", "build_directive", "build_fleet"]


def _expand(
    entries: list[str] | None, countries: Mapping[str, frozenset[str]]
) -> frozenset[str] | None:
    if entries is None:
        return None
    out: set[str] = set()
    for entry in entries:
        out |= countries.get(entry, frozenset({entry}))
    return frozenset(out)


def build_audience(
    doc: AudienceDoc | None, action: str, countries: Mapping[str, frozenset[str]]
) -> Audience:
    """The frozen audience with jurisdiction ids expanded to their countries."""
    if doc is None or action != Action.SUSPEND:
        return EVERYONE
    return Audience(
        nationality_in=_expand(doc.nationality_in, countries),
        nationality_not_in=_expand(doc.nationality_not_in, countries),
        residency_in=_expand(doc.residency_in, countries),
        residency_not_in=_expand(doc.residency_not_in, countries),
        except_groups=frozenset(doc.except_groups),
    )


def build_directive(
    d: ParsedDirective, countries: Mapping[str, frozenset[str]], signers: tuple[str, ...]
) -> Directive:
    v = d.value
    return Directive(
        id=v.id,
        jurisdiction=v.jurisdiction,
        issuer=v.issuer,
        reference=v.reference,
        action=Action(v.action),
        models=frozenset(v.models or ()),
        audience=build_audience(v.audience, v.action, countries),
        effective=v.effective,
        expires=v.expires,
        supersedes=v.supersedes,
        source=d.rel,
        sha256=hashlib.sha256(d.raw).hexdigest(),
        signers=signers,
    )


def build_fleet(
    profiles: Sequence[ParsedProfile],
    catalog: CatalogDoc,
    settings_doc: FleetSettingsDoc | None,
    parsed_directives: Sequence[ParsedDirective],
    signers: Mapping[str, tuple[str, ...]],
    digest: str,
) -> Fleet:
    """The frozen fleet of documents that passed every check; ``signers`` by directive path."""
    jurisdictions: dict[str, Jurisdiction] = {}
    sites: dict[str, Site] = {}
    for p in profiles:
        v = p.value
        for s in v.sites:
            sites[s.id] = Site(
                id=s.id,
                jurisdiction=v.jurisdiction,
                provider=s.provider,
                region=s.region,
                country=s.country,
                operator=s.operator,
                governed_by=frozenset(s.governed_by),
                governing=frozenset(),  # computed by Fleet (fleet.model.governing_set)
                capacity=s.capacity,
                endpoint=s.endpoint,
                instance_type=s.instance_type,
                instance_count=s.instance_count,
            )
        jurisdictions[v.jurisdiction] = Jurisdiction(
            id=v.jurisdiction,
            name=v.name,
            countries=frozenset(v.countries),
            authorities=tuple(Authority(a.id, _b64(a.public_key)) for a in v.authorities),
            directive_threshold=v.directive_threshold,
            process_in=frozenset(v.residency.process_in),
            export={k: frozenset(t) for k, t in v.export.items()},
            models=frozenset(v.models or ()),
            sites=tuple(s.id for s in v.sites),
            failover=tuple(v.failover),
            min_sites_per_model=v.guarantees.min_sites_per_model,
            source=p.rel,
            changes=_changes(v.changes),
        )
    models = {
        m.id: Model(m.id, m.origin, m.export_control, artifact_spec(m.artifact))
        for m in catalog.models
    }
    countries = {j.id: j.countries for j in jurisdictions.values()}
    directives = {
        d.value.id: build_directive(d, countries, signers.get(d.rel, ())) for d in parsed_directives
    }
    fs = settings_doc or FleetSettingsDoc()
    settings = FleetSettings(
        unlisted_countries=Unlisted(fs.unlisted_countries),
        dns=DnsSettings(fs.dns.hosted_zone_id, fs.dns.domain) if fs.dns else None,
        attestors=tuple(Attestor(a.id, _b64(a.public_key)) for a in fs.attestors),
        rollout=_rollout(fs.rollout),
    )
    return Fleet(
        jurisdictions=jurisdictions,
        sites=sites,
        models=models,
        directives=directives,
        settings=settings,
        digest=digest,
    )


def _duration(text: str) -> timedelta:
    value = parse_duration(text)
    assert value is not None  # the schema checked it
    return value


def _changes(doc: ChangesDoc | None) -> ChangeWindows | None:
    if doc is None:
        return None
    windows = tuple(
        Window(
            WindowKind.DENY if w.deny is not None else WindowKind.ALLOW,
            w.deny if w.deny is not None else str(w.allow),
            _duration(w.duration),
        )
        for w in doc.windows
    )
    return ChangeWindows(doc.timezone, windows)


def _rollout(doc: RolloutDoc | None) -> Rollout | None:
    if doc is None:
        return None
    return Rollout(tuple(tuple(w) for w in doc.waves), _duration(doc.healthy_for))


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
