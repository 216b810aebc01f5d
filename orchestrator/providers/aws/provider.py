"""The AWS provider: artifact buckets in S3 and deployments on SageMaker, per site.

Everything it creates is tagged ``sovereign:managed=true``, ``sovereign:site=<id>`` (and
``sovereign:model=<id>`` where a model is concerned); ``observe`` reports only resources with
those tags and ``apply`` refuses to adopt an untagged namesake, so nothing else in the account
is ever read into a plan, modified or deleted.
"""

from __future__ import annotations

from orchestrator.errors import PermanentProviderError
from orchestrator.fleet.model import Site
from orchestrator.providers.aws.naming import SUFFIX_OPTION
from orchestrator.providers.aws.s3 import ArtifactBuckets
from orchestrator.providers.aws.sagemaker import Deployments
from orchestrator.providers.aws.session import AwsClients, ProviderOptions
from orchestrator.providers.base import (
    Capabilities,
    Op,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
)


class AwsProvider:
    """``Provider`` for ``provider: aws`` sites. Options (``ProviderContext.options``):

    ``aws_endpoint_url`` / ``aws_endpoint_url.<region>`` (endpoint overrides),
    ``bucket_suffix`` (fleet-wide, keeps global bucket names unique),
    ``aws_sagemaker_role_arn``, ``aws_sagemaker_image``, ``aws_sagemaker_instance_type``
    (default size for sites without ``instance_type``), ``aws_max_attempts``,
    ``aws_connect_timeout``. Each may also be set as ``SOVEREIGN_<OPTION>`` in the environment
    (``SOVEREIGN_AWS_SAGEMAKER_ROLE_ARN``; ``.<region>`` becomes ``__<REGION>``).
    """

    name = "aws"

    def __init__(self, context: ProviderContext) -> None:
        self._context = context
        options = ProviderOptions(context.options)
        self.clients = AwsClients(options)
        self.buckets = ArtifactBuckets(self.clients, options.get(SUFFIX_OPTION, ""))
        self.deployments = Deployments(self.clients, options)

    def capabilities(self) -> Capabilities:
        return Capabilities(serves_models=True, stores_artifacts=True)

    def observe(self, site: Site) -> frozenset[Resource]:
        return self.buckets.observe(site) | self.deployments.observe(site)

    def apply(self, site: Site, change: ResourceChange) -> None:
        resource = change.resource
        if resource.target != site.id:
            raise PermanentProviderError(
                f"change {resource.address} targets {resource.target}, not site {site.id}"
            )
        if resource.kind is ResourceKind.ARTIFACT:
            if change.op is Op.DELETE:
                self.buckets.remove(site, resource.model)
            else:
                self.buckets.put(
                    site, resource.model, self._source(resource),
                    offline=self._context.offline_artifacts,
                )
        elif resource.kind is ResourceKind.DEPLOYMENT:
            if change.op is Op.DELETE:
                self.deployments.remove(site, resource.model)
            else:
                self.deployments.put(site, resource.model, self.buckets.bucket_for(site))
        else:
            raise PermanentProviderError(
                f"the aws provider does not manage {resource.kind.value} resources "
                f"({resource.address})",
                hint="DNS routes go to the route53 provider (target dns:<zone-id>)",
            )

    def _source(self, resource: Resource) -> str:
        source = resource.spec_dict().get("source")
        if source is None and resource.model in self._context.models:
            source = self._context.models[resource.model].artifact
        if not source:
            raise PermanentProviderError(
                f"{resource.address}: no artifact source known for model {resource.model}"
            )
        return source
