"""Desired DNS geolocation records (issue 5): one per (model, country), pointing at the first
site of the route for a principal of unknown nationality and no groups (the fail-closed
default), plus a default record only where the fleet allows unlisted countries.

Placeholder until the AWS work lands: no DNS records are desired.
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.fleet.model import Fleet
from orchestrator.providers.base import Resource


def desired_dns_records(fleet: Fleet, at: datetime) -> frozenset[Resource]:
    """ROUTE resources for ``fleet.settings.dns`` (empty when the fleet names no DNS zone)."""
    del fleet, at
    return frozenset()
