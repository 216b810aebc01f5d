"""Stack settings, from Pulumi config, with the same defaults as the orchestrator's providers."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from orchestrator.providers.aws.sagemaker import (
    DEFAULT_IMAGE,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_ROLE_ARN,
)


@dataclass(frozen=True)
class StackSettings:
    bucket_suffix: str = ""
    sagemaker_role_arn: str = DEFAULT_ROLE_ARN
    sagemaker_image: str = DEFAULT_IMAGE
    default_instance_type: str = DEFAULT_INSTANCE_TYPE
    gcp_project: str | None = None
    fleet_dir: str = "../regions"  # relative artifact sources are resolved against it
    # Adopt what the built-in providers created: every resource is declared with
    # ``import_=<its provider-derived id>``, so `pulumi up` takes it over instead of creating it.
    adopt: bool = False

    @classmethod
    def from_config(cls, config: pulumi.Config, fleet_dir: str) -> StackSettings:
        return cls(
            bucket_suffix=config.get("bucketSuffix") or "",
            sagemaker_role_arn=config.get("sagemakerRoleArn") or DEFAULT_ROLE_ARN,
            sagemaker_image=config.get("sagemakerImage") or DEFAULT_IMAGE,
            default_instance_type=config.get("defaultInstanceType") or DEFAULT_INSTANCE_TYPE,
            gcp_project=pulumi.Config("gcp").get("project"),
            fleet_dir=fleet_dir,
            adopt=config.get_bool("adopt") or False,
        )

    def options(
        self,
        parent: pulumi.Resource,
        adopt_id: str | None,
        depends_on: list[pulumi.Resource] | None = None,
    ) -> pulumi.ResourceOptions:
        """A resource's options: its parent, and in adopt mode the id to import it by."""
        return pulumi.ResourceOptions(
            parent=parent,
            depends_on=depends_on,
            import_=adopt_id if self.adopt else None,
        )

    def artifact_props(self, jurisdiction: str) -> dict[str, str]:
        """What every artifact placement needs besides its own entry."""
        return {
            "jurisdiction": jurisdiction,
            "bucket_suffix": self.bucket_suffix,
            "fleet_dir": self.fleet_dir,
        }
