"""Deployments on AWS: a SageMaker model, endpoint configuration and endpoint per (site, model).

The model serves the weights from the site's own artifact bucket (``s3://<bucket>/<model>/``,
uncompressed), so serving never reads across a border. Endpoint configurations are immutable:
a changed size creates a new configuration named by the spec's hash and moves the endpoint to
it. Apply does not wait for ``InService`` (that takes minutes); observe reports the declared
size of whatever endpoint exists, so the next plan is a no-op while it comes up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from orchestrator.adaptors.aws import call, lookup, pages
from orchestrator.errors import PermanentProviderError, TransientProviderError
from orchestrator.fleet.model import Site
from orchestrator.providers.aws.naming import (
    TAG_MODEL,
    endpoint_config_name,
    is_managed_by,
    managed_tags,
    sagemaker_base_name,
    sagemaker_site_prefix,
    tag_dict,
    tag_list,
)
from orchestrator.providers.aws.session import AwsClients
from orchestrator.providers.base import Resource, ResourceKind, spec_of

if TYPE_CHECKING:
    from types_boto3_sagemaker import SageMakerClient
    from types_boto3_sagemaker.literals import ProductionVariantInstanceTypeType

ROLE_OPTION = "aws_sagemaker_role_arn"
IMAGE_OPTION = "aws_sagemaker_image"
INSTANCE_TYPE_OPTION = "aws_sagemaker_instance_type"
# Placeholders a real account must override (docs/providers.md): the role must exist and trust
# sagemaker.amazonaws.com; the image is the Hugging Face TGI serving container, {region} filled in.
DEFAULT_ROLE_ARN = "arn:aws:iam::000000000000:role/SovereignSageMakerExecution"
DEFAULT_IMAGE = (
    "763104351884.dkr.ecr.{region}.amazonaws.com/"
    "huggingface-pytorch-tgi-inference:2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04"
)
DEFAULT_INSTANCE_TYPE = "ml.g5.2xlarge"
VARIANT = "primary"


class Deployments:
    """SageMaker resources of the deployments at AWS sites."""

    def __init__(self, clients: AwsClients, options: Mapping[str, str]) -> None:
        self._clients = clients
        self._role = options.get(ROLE_OPTION, DEFAULT_ROLE_ARN)
        self._image = options.get(IMAGE_OPTION, DEFAULT_IMAGE)
        self._default_type = options.get(INSTANCE_TYPE_OPTION, DEFAULT_INSTANCE_TYPE)

    def _sm(self, site: Site) -> SageMakerClient:
        return self._clients.sagemaker(site.region)

    def size_of(self, site: Site) -> tuple[str, int]:
        """The instance type and count a deployment at ``site`` should run with."""
        return site.instance_type or self._default_type, site.instance_count

    def _reported_type(self, site: Site, actual: str) -> str | None:
        # The planner's desired spec carries the site's declared instance_type, which is None
        # when the fleet leaves it to the provider default: report the default the same way.
        if site.instance_type is None and actual == self._default_type:
            return None
        return actual

    def _tags(self, site: Site, arn: str) -> dict[str, str]:
        found = pages(site.id, "sagemaker:ListTags", self._sm(site), "list_tags", ResourceArn=arn)
        return tag_dict([t for page in found or [] for t in page.get("Tags", [])])

    def observe(self, site: Site) -> frozenset[Resource]:
        """Endpoints tagged for this site, with their declared size. Untagged ones are skipped
        before anything else is read about them."""
        sm = self._sm(site)
        listed = (
            pages(
                site.id,
                "sagemaker:ListEndpoints",
                sm,
                "list_endpoints",
                NameContains=sagemaker_site_prefix(site.id),
            )
            or []
        )
        found: set[Resource] = set()
        for endpoint in (e for page in listed for e in page.get("Endpoints", [])):
            tags = self._tags(site, endpoint["EndpointArn"])
            if not is_managed_by(tags, site.id) or TAG_MODEL not in tags:
                continue
            described = lookup(
                site.id,
                "sagemaker:DescribeEndpoint",
                sm.describe_endpoint,
                EndpointName=endpoint["EndpointName"],
            )
            if described is None or described.get("EndpointStatus") in {"Deleting", "Failed"}:
                continue  # a failed endpoint is not serving: report it missing so it is redone
            config = lookup(
                site.id,
                "sagemaker:DescribeEndpointConfig",
                sm.describe_endpoint_config,
                EndpointConfigName=described["EndpointConfigName"],
            )
            variants = config.get("ProductionVariants", []) if config is not None else []
            variant: Mapping[str, Any] = variants[0] if variants else {}
            found.add(
                Resource(
                    kind=ResourceKind.DEPLOYMENT,
                    target=site.id,
                    model=tags[TAG_MODEL],
                    spec=spec_of(
                        instance_type=self._reported_type(site, variant.get("InstanceType", "")),
                        instance_count=variant.get("InitialInstanceCount", 0),
                    ),
                )
            )
        return frozenset(found)

    def _owned(self, site: Site, described: Mapping[str, Any] | None, arn_key: str) -> bool:
        """Whether an existing resource is ours; an untagged namesake is refused, never reused."""
        if described is None:
            return False
        if not is_managed_by(self._tags(site, described[arn_key]), site.id):
            raise PermanentProviderError(
                f"site {site.id}: {described[arn_key]} exists but is not tagged as Sovereign's "
                "for this site; refusing to adopt or modify it",
                hint="delete or rename it; Sovereign only touches resources it tagged",
            )
        return True

    def put(self, site: Site, model_id: str, bucket: str) -> None:
        """Create or resize the deployment of ``model_id`` (idempotent)."""
        sm = self._sm(site)
        name = sagemaker_base_name(site.id, model_id)
        tags = tag_list(managed_tags(site.id, model_id))
        instance_type, count = self.size_of(site)
        model = lookup(site.id, "sagemaker:DescribeModel", sm.describe_model, ModelName=name)
        if not self._owned(site, model, "ModelArn"):
            call(
                site.id,
                "sagemaker:CreateModel",
                sm.create_model,
                ModelName=name,
                ExecutionRoleArn=self._role,
                Tags=tags,
                PrimaryContainer={
                    "Image": self._image.format(region=site.region),
                    "ModelDataSource": {
                        "S3DataSource": {
                            "S3Uri": f"s3://{bucket}/{model_id}/",
                            "S3DataType": "S3Prefix",
                            "CompressionType": "None",
                        }
                    },
                    "Environment": {"HF_MODEL_ID": "/opt/ml/model"},
                },
            )
        config_name = endpoint_config_name(
            name, json.dumps([instance_type, count, self._image, bucket])
        )
        config = lookup(
            site.id,
            "sagemaker:DescribeEndpointConfig",
            sm.describe_endpoint_config,
            EndpointConfigName=config_name,
        )
        if not self._owned(site, config, "EndpointConfigArn"):
            call(
                site.id,
                "sagemaker:CreateEndpointConfig",
                sm.create_endpoint_config,
                EndpointConfigName=config_name,
                Tags=tags,
                ProductionVariants=[
                    {
                        "VariantName": VARIANT,
                        "ModelName": name,
                        "InstanceType": cast("ProductionVariantInstanceTypeType", instance_type),
                        "InitialInstanceCount": count,
                    }
                ],
            )
        endpoint = lookup(
            site.id, "sagemaker:DescribeEndpoint", sm.describe_endpoint, EndpointName=name
        )
        if not self._owned(site, endpoint, "EndpointArn"):
            call(
                site.id,
                "sagemaker:CreateEndpoint",
                sm.create_endpoint,
                EndpointName=name,
                EndpointConfigName=config_name,
                Tags=tags,
            )
        elif endpoint is not None:
            self._settle(site, name, endpoint, config_name)

    def _settle(self, site: Site, name: str, endpoint: Mapping[str, Any], config_name: str) -> None:
        """Move an existing endpoint of ours onto ``config_name``, as far as its state allows."""
        sm = self._sm(site)
        status = endpoint.get("EndpointStatus")
        if status == "Failed":
            # A failed endpoint cannot be updated: delete it and let the retry recreate it.
            call(site.id, "sagemaker:DeleteEndpoint", sm.delete_endpoint, EndpointName=name)
            raise TransientProviderError(
                f"site {site.id}: endpoint {name} had failed; deleted it, retry recreates it"
            )
        if status == "Deleting" or (
            status in {"Creating", "Updating", "SystemUpdating"}
            and endpoint.get("EndpointConfigName") != config_name
        ):
            # SageMaker refuses changes while it is busy; the reconciler retries later.
            raise TransientProviderError(
                f"site {site.id}: endpoint {name} is {status}; retry once it settles"
            )
        if endpoint.get("EndpointConfigName") != config_name:
            call(
                site.id,
                "sagemaker:UpdateEndpoint",
                sm.update_endpoint,
                EndpointName=name,
                EndpointConfigName=config_name,
            )

    def remove(self, site: Site, model_id: str) -> None:
        """Delete endpoint, its configurations and the model; missing pieces are already gone."""
        sm = self._sm(site)
        name = sagemaker_base_name(site.id, model_id)
        endpoint = lookup(
            site.id, "sagemaker:DescribeEndpoint", sm.describe_endpoint, EndpointName=name
        )
        if endpoint is not None and is_managed_by(
            self._tags(site, endpoint["EndpointArn"]), site.id
        ):
            lookup(site.id, "sagemaker:DeleteEndpoint", sm.delete_endpoint, EndpointName=name)
        configs = (
            pages(
                site.id,
                "sagemaker:ListEndpointConfigs",
                sm,
                "list_endpoint_configs",
                NameContains=name,
            )
            or []
        )
        for config in (c for page in configs for c in page.get("EndpointConfigs", [])):
            if not config["EndpointConfigName"].startswith(f"{name}-"):
                continue
            if is_managed_by(self._tags(site, config["EndpointConfigArn"]), site.id):
                lookup(
                    site.id,
                    "sagemaker:DeleteEndpointConfig",
                    sm.delete_endpoint_config,
                    EndpointConfigName=config["EndpointConfigName"],
                )
        model = lookup(site.id, "sagemaker:DescribeModel", sm.describe_model, ModelName=name)
        if model is not None and is_managed_by(self._tags(site, model["ModelArn"]), site.id):
            lookup(site.id, "sagemaker:DeleteModel", sm.delete_model, ModelName=name)
