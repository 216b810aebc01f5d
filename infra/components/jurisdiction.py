"""The stack of one jurisdiction: every site it declares, nothing else.

Which models each site serves comes from ``orchestrator.planning.desired.desired_pairs``, the
same rule ``sovereign plan`` uses (R1, R2, R4 and reachability), so the stack never declares a
deployment or bucket content the law forbids there. A stack named after no jurisdiction of the
fleet is refused rather than declaring nothing (fail closed, and loud).
"""

from __future__ import annotations

from datetime import datetime

import pulumi

from orchestrator.fleet.model import Fleet
from orchestrator.planning.desired import desired_pairs

from .aws_site import AwsSite
from .gcp_site import GcpSite
from .settings import StackSettings


class UnknownJurisdictionError(ValueError):
    """The stack name is not a jurisdiction of the fleet."""


class JurisdictionStack(pulumi.ComponentResource):
    def __init__(
        self,
        jurisdiction_id: str,
        fleet: Fleet,
        *,
        at: datetime,
        settings: StackSettings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if jurisdiction_id not in fleet.jurisdictions:
            valid = ", ".join(sorted(fleet.jurisdictions))
            raise UnknownJurisdictionError(
                f"stack {jurisdiction_id!r} is not a jurisdiction of the fleet; "
                f"name the stack after one of: {valid}"
            )
        super().__init__("sovereign:Jurisdiction", jurisdiction_id, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.jurisdiction_id = jurisdiction_id
        pairs = desired_pairs(fleet, at)
        self.bucket_names: list[str] = []
        self.deployment_addresses: list[str] = []
        for site_id in fleet.jurisdictions[jurisdiction_id].sites:
            site = fleet.sites[site_id]
            models = sorted(m for m, s in pairs if s == site_id)
            component: AwsSite | GcpSite
            if site.provider == "aws":
                component = AwsSite(site, models, settings, opts=child)
            elif site.provider == "gcp":
                component = GcpSite(site, models, settings, opts=child)
            else:
                continue  # local sites are directories on the orchestrator host
            self.bucket_names.append(component.bucket_name)
            self.deployment_addresses.extend(component.deployments)
        self.register_outputs(
            {"buckets": self.bucket_names, "deployments": self.deployment_addresses}
        )
