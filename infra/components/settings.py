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

    @classmethod
    def from_config(cls, config: pulumi.Config) -> StackSettings:
        return cls(
            bucket_suffix=config.get("bucketSuffix") or "",
            sagemaker_role_arn=config.get("sagemakerRoleArn") or DEFAULT_ROLE_ARN,
            sagemaker_image=config.get("sagemakerImage") or DEFAULT_IMAGE,
            default_instance_type=config.get("defaultInstanceType") or DEFAULT_INSTANCE_TYPE,
            gcp_project=pulumi.Config("gcp").get("project"),
        )
