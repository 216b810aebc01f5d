"""The GCP provider: per-site artifact buckets in GCS, deployments as declared intent records.

Desired state is the same for every provider (docs/planning.md, "Desired state"), so the planner
sends DEPLOYMENT changes to GCP sites too; they are recorded as ``deployments/<model>.json`` in the
site bucket (status ``declared``) and observed like any other resource. Serving capacity itself is
provisioned by the Pulumi stack in ``infra/``; the manifest is the intent record, not a running
endpoint.
"""

from __future__ import annotations

from orchestrator.fleet.artifacts import GCS
from orchestrator.fleet.model import Site
from orchestrator.providers.base import (
    ProviderContext,
    ProviderOptions,
    Resource,
    ResourceKind,
    SiteProvider,
    spec_of,
)
from orchestrator.providers.gcp.storage import GcsClients, SiteStore


class GcpProvider(SiteProvider):
    """``Provider`` for ``provider: gcp`` sites. Options (``ProviderContext.options``):

    ``gcs_endpoint_url`` / ``gcs_endpoint_url.<region>`` (emulator endpoints, anonymous),
    ``gcp_project``, ``bucket_suffix``, ``gcs_retry_timeout`` (seconds),
    ``gcs_artifact_region`` (whose endpoint serves ``gs://`` sources streamed elsewhere), and
    for ``s3://`` sources the AWS options plus ``aws_artifact_region``; each also as
    ``SOVEREIGN_<OPTION>``.
    """

    name = "gcp"

    def __init__(self, context: ProviderContext) -> None:
        self._context = context
        options = ProviderOptions(context.options)
        self.clients = GcsClients(options)
        self.store = SiteStore(self.clients, options)

    def observe(self, site: Site) -> frozenset[Resource]:
        artifacts, deployments = self.store.observe(site)
        found = {
            Resource(ResourceKind.ARTIFACT, site.id, model, spec=spec_of(source=source))
            for model, source in artifacts.items()
        }
        found |= {
            Resource(ResourceKind.DEPLOYMENT, site.id, model, spec=tuple(sorted(spec.items())))
            for model, spec in deployments.items()
        }
        return frozenset(found)

    def put_artifact(self, site: Site, resource: Resource) -> None:
        reader = None if self._context.offline_artifacts else self.source_reader(resource, GCS)
        self.store.put_artifact(site, resource.model, self.artifact_source(resource), reader)

    def remove_artifact(self, site: Site, resource: Resource) -> None:
        self.store.remove_artifact(site, resource.model)

    def put_deployment(self, site: Site, resource: Resource) -> None:
        self.store.put_deployment(site, resource.model, resource.spec_dict())

    def remove_deployment(self, site: Site, resource: Resource) -> None:
        self.store.remove_deployment(site, resource.model)
