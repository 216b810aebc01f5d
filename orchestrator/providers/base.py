"""The provider interface: observe what a site really holds, apply one change to it.

Like an httpx transport, a provider is a small protocol. The planner never talks to a cloud: it
diffs desired ``Resource`` sets against what ``observe`` returned, and the reconciler hands each
``ResourceChange`` to ``apply`` of the provider that owns the target. Providers raise only
``orchestrator.errors.ProviderError`` subclasses; no SDK exception escapes them.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrator.errors import PermanentProviderError
from orchestrator.fleet.artifacts import mirrors_of
from orchestrator.fleet.model import Model, Site

if TYPE_CHECKING:
    from orchestrator.providers.transfer import SourceReader


class ResourceKind(StrEnum):
    DEPLOYMENT = "deployment"  # the model served at a site
    ARTIFACT = "artifact"  # the model's weights stored at a site
    ROUTE = "route"  # a routing record (e.g. a DNS geolocation record)


class Op(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True, order=True)
class Resource:
    """One managed thing. Identity is (kind, target, model, key); ``spec`` is what it should be.

    ``target`` is a site id, or for fleet-wide resources a pseudo target such as
    ``dns:<zone-id>``. ``key`` distinguishes several resources of one kind per (target, model),
    e.g. the country of a DNS record. ``spec`` is a sorted tuple of (name, value) pairs so that
    resources hash and compare by value.
    """

    kind: ResourceKind
    target: str
    model: str
    key: str = ""
    spec: tuple[tuple[str, str], ...] = ()

    @property
    def address(self) -> str:
        key = f"[{self.key}]" if self.key else ""
        return f"{self.kind.value}.{self.target}.{self.model}{key}"

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.kind.value, self.target, self.model, self.key)

    def spec_dict(self) -> dict[str, str]:
        return dict(self.spec)


def spec_of(**values: str | int | None) -> tuple[tuple[str, str], ...]:
    """Build a canonical ``Resource.spec`` from keyword values (``None`` values are dropped)."""
    return tuple(sorted((k, str(v)) for k, v in values.items() if v is not None))


@dataclass(frozen=True, slots=True)
class ResourceChange:
    """What a provider is asked to do: ``before`` -> ``after`` (None on create/delete)."""

    op: Op
    before: Resource | None
    after: Resource | None

    @property
    def resource(self) -> Resource:
        r = self.after if self.after is not None else self.before
        assert r is not None  # a change always has at least one side
        return r


@dataclass(frozen=True)
class ProviderContext:
    """What every provider may need from the run, never credentials (those come from the
    standard chains: env, profiles, metadata)."""

    state_dir: Path  # .sovereign/ beside the fleet (local sites live below it)
    models: Mapping[str, Model] = field(default_factory=dict)
    offline_artifacts: bool = False  # stage a small synthetic artifact instead of fetching
    options: Mapping[str, str] = field(default_factory=dict)


ENV_PREFIX = "SOVEREIGN_"


def option_env_name(key: str) -> str:
    """``aws_endpoint_url.eu-central-1`` -> ``SOVEREIGN_AWS_ENDPOINT_URL__EU_CENTRAL_1``."""
    head, dot, tail = key.partition(".")
    name = head + ("__" + tail if dot else "")
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


class ProviderOptions(Mapping[str, str]):
    """``ProviderContext.options``, falling back to ``SOVEREIGN_<OPTION>`` environment variables.

    The CLI passes no provider options, so a real account is configured through the
    environment (role ARN, bucket suffix, endpoints); explicit options win.
    """

    def __init__(self, explicit: Mapping[str, str] | None = None) -> None:
        self._explicit = dict(explicit or {})

    def __getitem__(self, key: str) -> str:
        if key in self._explicit:
            return self._explicit[key]
        value = os.environ.get(option_env_name(key))
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._explicit)

    def __len__(self) -> int:
        return len(self._explicit)


@runtime_checkable
class Provider(Protocol):
    name: str

    def observe(self, site: Site) -> frozenset[Resource]:
        """What the site really holds now, managed resources only."""
        ...

    def apply(self, site: Site, change: ResourceChange) -> None:
        """Carry out one change; idempotent (re-applying a done change is a no-op)."""
        ...


@runtime_checkable
class RouteProvider(Protocol):
    """A provider of fleet-wide ROUTE resources (e.g. DNS), addressed by a pseudo target such
    as ``dns:<zone-id>`` instead of a site."""

    name: str

    def observe_routes(self, target: str) -> frozenset[Resource]:
        """The managed route resources that exist under ``target`` now."""
        ...

    def apply_route(self, target: str, change: ResourceChange) -> None:
        """Carry out one route change; idempotent."""
        ...


class SiteProvider(ABC):
    """Template for providers whose sites hold artifacts and deployments.

    ``apply`` refuses a change meant for another site or kind and sends the rest to one of four
    operations, so each provider writes only what differs: how to put and remove an artifact
    and a deployment. Each operation must be idempotent.
    """

    name: str
    _context: ProviderContext

    def apply(self, site: Site, change: ResourceChange) -> None:
        resource = change.resource
        if resource.target != site.id:
            raise PermanentProviderError(
                f"change {resource.address} targets {resource.target}, not site {site.id}"
            )
        deleting = change.op is Op.DELETE
        if resource.kind is ResourceKind.ARTIFACT:
            if deleting:
                self.remove_artifact(site, resource)
            else:
                self.put_artifact(site, resource)
        elif resource.kind is ResourceKind.DEPLOYMENT:
            if deleting:
                self.remove_deployment(site, resource)
            else:
                self.put_deployment(site, resource)
        else:
            raise PermanentProviderError(
                f"the {self.name} provider does not manage {resource.kind.value} resources "
                f"({resource.address})",
                hint="route resources go to the reconciler (target table) or a route provider "
                "(target dns:<zone-id>)",
            )

    def artifact_source(self, resource: Resource) -> str:
        """Where an artifact's weights come from: its spec, else the model catalog (one
        source, or mirrors as a JSON list: ``fleet.artifacts``)."""
        source = resource.spec_dict().get("source")
        if source is None and resource.model in self._context.models:
            source = self._context.models[resource.model].artifact
        if not source:
            raise PermanentProviderError(
                f"{resource.address}: no artifact source known for model {resource.model}"
            )
        return source

    @property
    def fleet_dir(self) -> Path:
        """Relative artifact paths are resolved against the fleet directory."""
        return Path(self._context.options.get("fleet_dir", str(self._context.state_dir.parent)))

    def source_reader(self, resource: Resource, own_kind: str) -> SourceReader:
        """The reader of the mirror this site copies from: the first in its own cloud
        (``own_kind``: s3, gs or file), else the first it can read (docs/fleet-format.md)."""
        from orchestrator.providers.sources import choose_mirror, open_source, probe

        options = ProviderOptions(self._context.options)
        chosen = choose_mirror(
            mirrors_of(self.artifact_source(resource)),
            own_kind,
            lambda uri: probe(uri, options, self.fleet_dir),
        )
        return open_source(chosen, options, self.fleet_dir)

    @abstractmethod
    def put_artifact(self, site: Site, resource: Resource) -> None: ...

    @abstractmethod
    def remove_artifact(self, site: Site, resource: Resource) -> None: ...

    @abstractmethod
    def put_deployment(self, site: Site, resource: Resource) -> None: ...

    @abstractmethod
    def remove_deployment(self, site: Site, resource: Resource) -> None: ...


ProviderFactory = Callable[[ProviderContext], Provider | RouteProvider]
