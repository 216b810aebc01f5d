"""One GCP site: its artifact bucket and a Vertex AI endpoint per deployment.

This is the serving capacity behind the ``gcp`` provider's ``deployments/<model>.json`` intent
records. The endpoint is declared in the site's region with Sovereign's labels; deploying the
model onto it (a Vertex AI model upload from the site bucket) is the serving team's pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable

import pulumi
import pulumi_gcp as gcp

from orchestrator.fleet.model import Site
from orchestrator.providers.gcp.storage import gcs_bucket_name, label_value, ownership

from .settings import StackSettings


class GcpSite(pulumi.ComponentResource):
    def __init__(
        self,
        site: Site,
        models: Iterable[str],
        settings: StackSettings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("sovereign:gcp:Site", site.id, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket_name = gcs_bucket_name(site.id, settings.bucket_suffix)
        gcp.storage.Bucket(
            f"{site.id}-artifacts",
            name=self.bucket_name,
            location=site.region.upper(),
            project=settings.gcp_project,
            labels=ownership(site.id),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            opts=child,
        )
        self.deployments: list[str] = []
        for model_id in sorted(models):
            gcp.vertex.AiEndpoint(
                f"{site.id}-{model_id}-endpoint",
                display_name=f"sovereign {model_id} at {site.id}",
                location=site.region,
                region=site.region,
                project=settings.gcp_project,
                labels={**ownership(site.id), "sovereign-model": label_value(model_id)},
                opts=child,
            )
            self.deployments.append(f"deployment.{site.id}.{model_id}")
        self.register_outputs({"bucket": self.bucket_name})
