"""One jurisdiction's desired state as the input of its Pulumi stack (``sovereign export``).

The Pulumi program in ``infra/`` declares what this document says and nothing else: it never
decides the law on its own. The document is computed by the same rules as ``sovereign plan``
(``desired_pairs``: R1, R2, R4 and reachability), so a stack can never hold a deployment or
weights that the planner would refuse, and it holds only the sites its jurisdiction declares.

Format (``format: 1``)::

    {"format": 1, "jurisdiction": "EU", "at": ISO8601, "fleet_digest": HEX,
     "sites":       [{"id", "provider", "region", "country", "operator",
                      "instance_type", "instance_count", "tags"}],
     "deployments": [{"address", "site", "model", "instance_type", "instance_count", "spec",
                      "tags"}],
     "artifacts":   [{"address", "site", "model", "source", "origin", "export_control", "spec",
                      "tags"}],
     "tags": {...}}

``tags`` are the ownership marks the site's own built-in provider puts on what it creates, in
that provider's form (AWS tags ``sovereign:site``, GCS labels ``sovereign-site``), so either
side recognises the other's resources; the top-level ``tags`` are those every resource of the stack
carries; ``spec`` is the resource's spec as ``sovereign plan`` compares it (what the Pulumi
engine reports a site holds when the stack matches). ``StackInput.from_json`` reads the
document back and refuses one that is malformed or that names a site of another jurisdiction
(fail closed: a stack never spills into another).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from orchestrator.errors import UsageError
from orchestrator.fleet.model import Fleet, ProviderName, Site
from orchestrator.planning.desired import artifact_resource, deployment_resource, desired_pairs
from orchestrator.providers.aws.naming import TAG_MANAGED, managed_tags
from orchestrator.providers.gcp.storage import ownership as gcp_ownership

EXPORT_FORMAT = 1
EXPORT_FORMATS = ("pulumi",)

# Each kind of site's ownership marks, from its own provider. Local sites create nothing in a
# cloud; they take the AWS form.
_OWNERSHIP: dict[ProviderName, Callable[[str, str | None], dict[str, str]]] = {
    ProviderName.AWS: managed_tags,
    ProviderName.GCP: gcp_ownership,
    ProviderName.LOCAL: managed_tags,
}


def ownership_tags(site: Site, model_id: str | None = None) -> dict[str, str]:
    """What marks ``site``'s resources (and ``model_id``'s) as Sovereign's, in its cloud's form."""
    return _OWNERSHIP[site.provider](site.id, model_id)


def unknown_jurisdiction(fleet: Fleet, jurisdiction_id: str) -> UsageError:
    valid = ", ".join(sorted(fleet.jurisdictions))
    return UsageError(
        f"{jurisdiction_id!r} is not a jurisdiction of the fleet",
        hint=f"valid jurisdictions: {valid}",
    )


def export_stack_input(fleet: Fleet, at: datetime, jurisdiction_id: str) -> dict[str, Any]:
    """The desired state of ``jurisdiction_id``'s sites at ``at``, as a JSON-ready document."""
    if jurisdiction_id not in fleet.jurisdictions:
        raise unknown_jurisdiction(fleet, jurisdiction_id)
    own = fleet.jurisdictions[jurisdiction_id].sites
    pairs = sorted((s, m) for m, s in desired_pairs(fleet, at) if s in own)
    sites = [
        SiteInput(
            id=site.id,
            provider=site.provider,
            region=site.region,
            country=site.country,
            operator=site.operator,
            instance_type=site.instance_type,
            instance_count=site.instance_count,
            tags=ownership_tags(site),
        )
        for site in (fleet.sites[site_id] for site_id in own)
    ]
    deployments: list[DeploymentInput] = []
    artifacts: list[ArtifactInput] = []
    for site_id, model_id in pairs:
        model = fleet.models[model_id]
        tags = ownership_tags(fleet.sites[site_id], model_id)
        deployment = deployment_resource(fleet, model_id, site_id)
        spec = deployment.spec_dict()
        deployments.append(
            DeploymentInput(
                address=deployment.address,
                site=site_id,
                model=model_id,
                instance_type=spec.get("instance_type"),
                instance_count=int(spec["instance_count"]),
                spec=spec,
                tags=tags,
            )
        )
        artifact = artifact_resource(fleet, model_id, site_id)
        artifacts.append(
            ArtifactInput(
                address=artifact.address,
                site=site_id,
                model=model_id,
                source=artifact.spec_dict()["source"],
                origin=model.origin,
                export_control=model.export_control,
                spec=artifact.spec_dict(),
                tags=tags,
            )
        )
    return {
        "format": EXPORT_FORMAT,
        "jurisdiction": jurisdiction_id,
        "at": at.isoformat(),
        "fleet_digest": fleet.digest,
        "sites": [_to_json(x) for x in sites],
        "deployments": [_to_json(x) for x in deployments],
        "artifacts": [_to_json(x) for x in artifacts],
        "tags": {TAG_MANAGED: "true"},
    }


def desired_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of what a stack must hold (the document without ``at`` and ``fleet_digest``):
    equal digests mean the stack's desired state did not change."""
    body = {k: v for k, v in document.items() if k not in ("at", "fleet_digest")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# -- reading it back (the program's side) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteInput:
    id: str
    provider: str
    region: str
    country: str
    operator: str
    instance_type: str | None
    instance_count: int
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DeploymentInput:
    address: str
    site: str
    model: str
    instance_type: str | None
    instance_count: int
    spec: Mapping[str, str]
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ArtifactInput:
    address: str
    site: str
    model: str
    source: str
    origin: str
    export_control: str
    spec: Mapping[str, str]
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StackInput:
    """A parsed export: what one jurisdiction's stack must declare."""

    jurisdiction: str
    at: str
    fleet_digest: str
    sites: tuple[SiteInput, ...]
    deployments: tuple[DeploymentInput, ...]
    artifacts: tuple[ArtifactInput, ...]
    tags: Mapping[str, str]

    def site(self, site_id: str) -> SiteInput:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, stack: str | None = None) -> StackInput:
        """Parse and check an export; ``stack`` (the stack's name) must be its jurisdiction."""
        try:
            if data.get("format") != EXPORT_FORMAT:
                raise ValueError(f"format {data.get('format')!r} is not {EXPORT_FORMAT}")
            parsed = cls(
                jurisdiction=str(data["jurisdiction"]),
                at=str(data["at"]),
                fleet_digest=str(data["fleet_digest"]),
                sites=tuple(_from_json(SiteInput, s) for s in data["sites"]),
                deployments=tuple(_from_json(DeploymentInput, d) for d in data["deployments"]),
                artifacts=tuple(_from_json(ArtifactInput, a) for a in data["artifacts"]),
                tags=_tags(data["tags"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(
                f"the stack input is malformed: {exc}",
                hint="write it with `sovereign export --jurisdiction J --format pulumi`",
            ) from exc
        parsed.check(stack)
        return parsed

    def check(self, stack: str | None) -> None:
        """Refuse an input for another stack, or one whose entries leave its own sites."""
        if stack is not None and stack != self.jurisdiction:
            raise UsageError(
                f"stack {stack!r} was given the desired state of {self.jurisdiction!r}",
                hint="each stack is named after its jurisdiction and reads only that "
                "jurisdiction's export",
            )
        own = {s.id for s in self.sites}
        entries: tuple[DeploymentInput | ArtifactInput, ...] = (*self.deployments, *self.artifacts)
        for entry in entries:
            if entry.site not in own:
                raise UsageError(
                    f"{entry.address} names site {entry.site!r}, which is not a site of "
                    f"{self.jurisdiction}",
                    hint="a stack declares only its own jurisdiction's sites",
                )


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError("tags must be an object")
    return {str(k): str(v) for k, v in value.items()}


# One record type per entry, read and written by its fields: the format is the dataclasses.
# Field types as written in the annotations (``from __future__ import annotations``).
_READ: dict[str, Callable[[Any], Any]] = {
    "str": str,
    "int": int,
    "str | None": lambda v: None if v is None else str(v),
    "Mapping[str, str]": _tags,
}
_Record = TypeVar("_Record", SiteInput, DeploymentInput, ArtifactInput)


def _to_json(record: SiteInput | DeploymentInput | ArtifactInput) -> dict[str, Any]:
    return {
        f.name: dict(v) if isinstance(v := getattr(record, f.name), Mapping) else v
        for f in fields(record)
    }


def _from_json(cls: type[_Record], data: Mapping[str, Any]) -> _Record:
    """A record from its JSON object; a missing field is a KeyError (optional ones: None)."""
    values = {
        f.name: _READ[str(f.type)](data.get(f.name) if "None" in str(f.type) else data[f.name])
        for f in fields(cls)
    }
    return cls(**values)
