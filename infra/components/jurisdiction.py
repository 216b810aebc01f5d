"""The stack of one jurisdiction: every site its export declares, nothing else.

What to declare comes from the stack input (``sovereign export``, see
``orchestrator.planning.export``), computed by the same rules as ``sovereign plan``: the stack
never decides the law itself, so it cannot declare a deployment or weights the planner would
refuse. An input for another jurisdiction, or naming another jurisdiction's site, is refused
rather than declared (fail closed, and loud).

Logical names: the serving resource of a deployment and the artifact placement are named by
their Sovereign address (``deployment.<site>.<model>``, ``artifact.<site>.<model>``), their
helpers ``<address>/<part>``, site-wide resources ``<site>/<part>``. That is how the engine maps
a preview step back to a plan change, and targets one change's resources on ``up``.
"""

from __future__ import annotations

import pulumi

from orchestrator.planning.export import StackInput

from .aws_site import AwsSite
from .gcp_site import GcpSite
from .settings import StackSettings


class JurisdictionStack(pulumi.ComponentResource):
    def __init__(
        self,
        stack: str,
        stack_input: StackInput,
        *,
        settings: StackSettings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        stack_input.check(stack)
        super().__init__("sovereign:Jurisdiction", stack, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.jurisdiction_id = stack
        self.bucket_names: list[str] = []
        self.deployment_addresses: list[str] = []
        self.artifact_addresses: list[str] = []
        self.leaves: list[pulumi.Resource] = []  # every cloud resource declared
        for site in stack_input.sites:
            deployments = [d for d in stack_input.deployments if d.site == site.id]
            artifacts = [a for a in stack_input.artifacts if a.site == site.id]
            component: AwsSite | GcpSite
            if site.provider == "aws":
                component = AwsSite(stack, site, deployments, artifacts, settings, opts=child)
            elif site.provider == "gcp":
                component = GcpSite(stack, site, deployments, artifacts, settings, opts=child)
            else:
                continue  # local sites are directories on the orchestrator host
            self.leaves.extend(component.leaves)
            self.bucket_names.append(component.bucket_name)
            self.deployment_addresses.extend(component.deployments)
            self.artifact_addresses.extend(component.artifacts)
        self.register_outputs(
            {
                "buckets": self.bucket_names,
                "deployments": self.deployment_addresses,
                "artifacts": self.artifact_addresses,
            }
        )
