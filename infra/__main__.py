"""Pulumi program: the infrastructure of ONE jurisdiction, named by the stack.

    cd infra && pulumi stack select EU && pulumi preview

What to declare is the jurisdiction's export (``sovereign export``; see components/inputs.py
for where it is read from), so a stack can only ever declare its own jurisdiction's sites, and
only deployments and weights the law allows there. See README.md.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
from components.inputs import load_stack_input
from components.jurisdiction import JurisdictionStack
from components.settings import StackSettings

here = Path(__file__).parent
config = pulumi.Config("sovereign")
fleet_dir = str((here / (config.get("fleet") or "../regions")).resolve())
stack = JurisdictionStack(
    pulumi.get_stack(),
    load_stack_input(config, pulumi.get_stack(), here),
    settings=StackSettings.from_config(config, fleet_dir),
)
pulumi.export("jurisdiction", stack.jurisdiction_id)
pulumi.export("artifact_buckets", stack.bucket_names)
pulumi.export("deployments", stack.deployment_addresses)
pulumi.export("artifacts", stack.artifact_addresses)
