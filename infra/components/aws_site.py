"""One AWS site: its artifact bucket, the weights placed in it, and a SageMaker model,
endpoint configuration and endpoint per deployment, with the names and tags the ``aws``
provider uses (so each recognises the other's resources as Sovereign's, and nothing is
declared outside the site's region). Tags come from the export, verbatim."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from orchestrator.planning.export import ArtifactInput, DeploymentInput, SiteInput
from orchestrator.providers.aws.naming import (
    bucket_name,
    endpoint_config_name,
    sagemaker_base_name,
)
from orchestrator.providers.pulumi.artifacts import ArtifactPlacement

from .settings import StackSettings


class AwsSite(pulumi.ComponentResource):
    def __init__(
        self,
        jurisdiction: str,
        site: SiteInput,
        deployments: Sequence[DeploymentInput],
        artifacts: Sequence[ArtifactInput],
        settings: StackSettings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("sovereign:aws:Site", site.id, None, opts)
        self.leaves: list[pulumi.Resource] = []
        region = site.region
        self.bucket_name = bucket_name(site.id, settings.bucket_suffix)
        bucket = aws.s3.Bucket(
            f"{site.id}/bucket",
            bucket=self.bucket_name,
            region=region,
            tags=dict(site.tags),
            opts=settings.options(self, self.bucket_name),
        )
        versioning = aws.s3.BucketVersioning(
            f"{site.id}/bucket-versioning",
            bucket=bucket.id,
            region=region,
            versioning_configuration={"status": "Enabled"},
            opts=settings.options(self, self.bucket_name),
        )
        private = aws.s3.BucketPublicAccessBlock(
            f"{site.id}/bucket-private",
            bucket=bucket.id,
            region=region,
            block_public_acls=True,
            ignore_public_acls=True,
            block_public_policy=True,
            restrict_public_buckets=True,
            opts=settings.options(self, self.bucket_name),
        )
        self.leaves += [bucket, versioning, private]
        placed: dict[str, ArtifactPlacement] = {}
        self.artifacts: list[str] = []
        for a in artifacts:
            placed[a.model] = ArtifactPlacement(
                a.address,
                {
                    **settings.artifact_props(jurisdiction),
                    "address": a.address,
                    "site": _site_props(site),
                    "model": a.model,
                    "source": a.source,
                    "tags": dict(a.tags),
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[bucket]),
            )
            self.leaves.append(placed[a.model])
            self.artifacts.append(a.address)
        image = settings.sagemaker_image.format(region=region)
        self.deployments: list[str] = []
        for d in deployments:
            instance_type = d.instance_type or settings.default_instance_type
            name = sagemaker_base_name(site.id, d.model)
            tags = dict(d.tags)
            weights = [placed[d.model]] if d.model in placed else []
            model = aws.sagemaker.Model(
                f"{d.address}/model",
                name=name,
                region=region,
                execution_role_arn=settings.sagemaker_role_arn,
                primary_container={
                    "image": image,
                    "model_data_source": {
                        "s3_data_source": {
                            "s3_uri": f"s3://{self.bucket_name}/{d.model}/",
                            "s3_data_type": "S3Prefix",
                            "compression_type": "None",
                        }
                    },
                    "environment": {"HF_MODEL_ID": "/opt/ml/model"},
                },
                tags=tags,
                opts=settings.options(self, name, depends_on=weights),
            )
            # The same name the aws provider derives, so both address one configuration.
            config_name = endpoint_config_name(
                name,
                json.dumps(
                    [instance_type, d.instance_count, settings.sagemaker_image, self.bucket_name]
                ),
            )
            config = aws.sagemaker.EndpointConfiguration(
                f"{d.address}/config",
                name=config_name,
                region=region,
                production_variants=[
                    {
                        "variant_name": "primary",
                        "model_name": model.name,
                        "instance_type": instance_type,
                        "initial_instance_count": d.instance_count,
                    }
                ],
                tags=tags,
                opts=settings.options(self, config_name),
            )
            endpoint = aws.sagemaker.Endpoint(
                d.address,
                name=name,
                region=region,
                endpoint_config_name=config.name,
                tags=tags,
                opts=settings.options(self, name),
            )
            self.leaves += [model, config, endpoint]
            self.deployments.append(d.address)
        self.register_outputs({"bucket": self.bucket_name})


def _site_props(site: SiteInput) -> dict[str, str]:
    return {
        "id": site.id,
        "provider": site.provider,
        "region": site.region,
        "country": site.country,
        "operator": site.operator,
    }
