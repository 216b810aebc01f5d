"""Pulumi program: the infrastructure of ONE jurisdiction, named by the stack.

    cd infra && pulumi stack select EU && pulumi preview

The fleet is read with the same loader as the CLI (signatures included), and what to declare
comes from the same desired-state rules as ``sovereign plan``: a stack can only ever declare
its own jurisdiction's sites, and only deployments the law allows there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pulumi
from components.jurisdiction import JurisdictionStack, StackSettings

from orchestrator.fleet.loader import load_fleet

config = pulumi.Config("sovereign")
fleet_dir = (Path(__file__).parent / (config.get("fleet") or "../regions")).resolve()
at_text = config.get("at")
at = datetime.fromisoformat(at_text.replace("Z", "+00:00")) if at_text else datetime.now(UTC)

stack = JurisdictionStack(
    pulumi.get_stack(),
    load_fleet(fleet_dir),
    at=at,
    settings=StackSettings.from_config(config),
)
pulumi.export("jurisdiction", stack.jurisdiction_id)
pulumi.export("artifact_buckets", stack.bucket_names)
pulumi.export("deployments", stack.deployment_addresses)
