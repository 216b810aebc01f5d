"""One AWS site: its artifact bucket and a SageMaker model, endpoint configuration and endpoint
per deployment, with the names and tags the ``aws`` provider uses (so each recognises the
other's resources as Sovereign's, and nothing is declared outside the site's region)."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pulumi
import pulumi_aws as aws

from orchestrator.fleet.model import Site
from orchestrator.providers.aws.naming import (
    bucket_name,
    endpoint_config_name,
    managed_tags,
    sagemaker_base_name,
)

from .settings import StackSettings


class AwsSite(pulumi.ComponentResource):
    def __init__(
        self,
        site: Site,
        models: Iterable[str],
        settings: StackSettings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("sovereign:aws:Site", site.id, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = site.region
        self.bucket_name = bucket_name(site.id, settings.bucket_suffix)
        bucket = aws.s3.Bucket(
            f"{site.id}-artifacts",
            bucket=self.bucket_name,
            region=region,
            tags=managed_tags(site.id),
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{site.id}-artifacts-versioning",
            bucket=bucket.id,
            region=region,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{site.id}-artifacts-private",
            bucket=bucket.id,
            region=region,
            block_public_acls=True,
            ignore_public_acls=True,
            block_public_policy=True,
            restrict_public_buckets=True,
            opts=child,
        )
        instance_type = site.instance_type or settings.default_instance_type
        image = settings.sagemaker_image.format(region=region)
        self.deployments: list[str] = []
        for model_id in sorted(models):
            name = sagemaker_base_name(site.id, model_id)
            tags = managed_tags(site.id, model_id)
            model = aws.sagemaker.Model(
                f"{site.id}-{model_id}-model",
                name=name,
                region=region,
                execution_role_arn=settings.sagemaker_role_arn,
                primary_container={
                    "image": image,
                    "model_data_source": {
                        "s3_data_source": {
                            "s3_uri": f"s3://{self.bucket_name}/{model_id}/",
                            "s3_data_type": "S3Prefix",
                            "compression_type": "None",
                        }
                    },
                    "environment": {"HF_MODEL_ID": "/opt/ml/model"},
                },
                tags=tags,
                opts=child,
            )
            config = aws.sagemaker.EndpointConfiguration(
                f"{site.id}-{model_id}-config",
                # The same name the aws provider derives, so both address one configuration.
                name=endpoint_config_name(
                    name,
                    json.dumps(
                        [
                            instance_type,
                            site.instance_count,
                            settings.sagemaker_image,
                            self.bucket_name,
                        ]
                    ),
                ),
                region=region,
                production_variants=[
                    {
                        "variant_name": "primary",
                        "model_name": model.name,
                        "instance_type": instance_type,
                        "initial_instance_count": site.instance_count,
                    }
                ],
                tags=tags,
                opts=child,
            )
            aws.sagemaker.Endpoint(
                f"{site.id}-{model_id}-endpoint",
                name=name,
                region=region,
                endpoint_config_name=config.name,
                tags=tags,
                opts=child,
            )
            self.deployments.append(f"deployment.{site.id}.{model_id}")
        self.register_outputs({"bucket": self.bucket_name})
