"""Model weights as a Pulumi resource: a dynamic provider over Sovereign's own artifact copy.

Pulumi is not a data mover, and the weights must be placed exactly as the built-in providers
place them (server-side copy where possible, streamed and checked otherwise, committed by the
manifest last; removal deletes every version). So the stack declares one ``ArtifactPlacement``
per (model, site) of its export, and creating, updating or deleting it calls the built-in
``aws``/``gcp`` provider's ``put_artifact``/``remove_artifact`` for that site. Both engines
therefore leave identical objects behind, which is what lets a team move between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from orchestrator.fleet.model import ProviderName, Site
from orchestrator.providers import create_provider
from orchestrator.providers.base import (
    Op,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
    SiteProvider,
    spec_of,
)


def _site_of(props: dict[str, Any]) -> Site:
    site = props["site"]
    return Site(
        id=str(site["id"]),
        jurisdiction=str(props["jurisdiction"]),
        provider=ProviderName(str(site["provider"])),
        region=str(site["region"]),
        country=str(site["country"]),
        operator=str(site["operator"]),
        governed_by=frozenset(),
        governing=frozenset({str(props["jurisdiction"])}),
    )


def _change(op: Op, props: dict[str, Any]) -> ResourceChange:
    resource = Resource(
        ResourceKind.ARTIFACT,
        str(props["site"]["id"]),
        str(props["model"]),
        spec=spec_of(source=str(props["source"])),
    )
    if op is Op.DELETE:
        return ResourceChange(op, resource, None)
    return ResourceChange(op, None, resource)


def _apply(op: Op, props: dict[str, Any]) -> None:
    site = _site_of(props)
    context = ProviderContext(
        state_dir=Path(str(props.get("state_dir", "."))),
        options={
            "bucket_suffix": str(props.get("bucket_suffix", "")),
            "fleet_dir": str(props.get("fleet_dir", ".")),
        },
    )
    provider = create_provider(site.provider, context)
    assert isinstance(provider, SiteProvider), f"{site.provider} cannot hold artifacts"
    provider.apply(site, _change(op, props))


class ArtifactProvider(pulumi.dynamic.ResourceProvider):
    """Create, replace and delete one artifact placement through the built-in provider."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        _apply(Op.CREATE, props)
        return pulumi.dynamic.CreateResult(id_=str(props["address"]), outs=props)

    def diff(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        keys = ("source", "site", "model", "bucket_suffix")
        changed = [k for k in keys if _olds.get(k) != _news.get(k)]
        return pulumi.dynamic.DiffResult(
            changes=bool(changed),
            replaces=[k for k in changed if k != "source"],
            delete_before_replace=True,
        )

    def update(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        _apply(Op.UPDATE, _news)  # a new source: the built-in copy replaces the weights
        return pulumi.dynamic.UpdateResult(outs=_news)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        _apply(Op.DELETE, _props)


class ArtifactPlacement(pulumi.dynamic.Resource):
    """The weights of ``props['model']`` at ``props['site']``, named by their Sovereign address
    (``artifact.<site>.<model>``) so a preview step maps back to a plan change."""

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(ArtifactProvider(), name, props, opts)
