"""The AWS provider: artifact buckets in S3 and deployments on SageMaker, per site.

Everything it creates is tagged ``sovereign:managed=true``, ``sovereign:site=<id>`` (and
``sovereign:model=<id>`` where a model is concerned); ``observe`` reports only resources with
those tags and ``apply`` refuses to adopt an untagged namesake, so nothing else in the account
is ever read into a plan, modified or deleted.
"""

from __future__ import annotations

from orchestrator.fleet.artifacts import S3
from orchestrator.fleet.model import Site
from orchestrator.providers.aws.naming import SUFFIX_OPTION
from orchestrator.providers.aws.s3 import ArtifactBuckets
from orchestrator.providers.aws.sagemaker import Deployments
from orchestrator.providers.aws.session import AwsClients, ProviderOptions
from orchestrator.providers.base import (
    ProviderContext,
    Resource,
    SiteProvider,
)


class AwsProvider(SiteProvider):
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

    def observe(self, site: Site) -> frozenset[Resource]:
        return self.buckets.observe(site) | self.deployments.observe(site)

    def put_artifact(self, site: Site, resource: Resource) -> None:
        reader = None if self._context.offline_artifacts else self.source_reader(resource, S3)
        self.buckets.put(site, resource.model, self.artifact_source(resource), reader)

    def remove_artifact(self, site: Site, resource: Resource) -> None:
        self.buckets.remove(site, resource.model)

    def put_deployment(self, site: Site, resource: Resource) -> None:
        self.deployments.put(site, resource.model, self.buckets.bucket_for(site))

    def remove_deployment(self, site: Site, resource: Resource) -> None:
        self.deployments.remove(site, resource.model)
