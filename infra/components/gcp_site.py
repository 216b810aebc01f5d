"""One GCP site: its artifact bucket, the weights placed in it, and a Vertex AI endpoint per
deployment.

This is the serving capacity behind the ``gcp`` provider's ``deployments/<model>.json`` intent
records. The endpoint is declared in the site's region with Sovereign's labels (the export's
tags in GCS label form: ``sovereign-managed``, ``sovereign-site``, ``sovereign-model``);
deploying the model onto it (a Vertex AI model upload from the site bucket) is the serving
team's pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_gcp as gcp

from orchestrator.planning.export import ArtifactInput, DeploymentInput, SiteInput
from orchestrator.providers.gcp.storage import gcs_bucket_name, label_value
from orchestrator.providers.pulumi.artifacts import ArtifactPlacement

from .aws_site import _site_props
from .settings import StackSettings


def labels_of(tags: Mapping[str, str]) -> dict[str, str]:
    """GCP label form of Sovereign's tags: ``sovereign:site`` -> ``sovereign-site``."""
    return {k.replace(":", "-"): label_value(v) for k, v in tags.items()}


class GcpSite(pulumi.ComponentResource):
    def __init__(
        self,
        jurisdiction: str,
        site: SiteInput,
        deployments: Sequence[DeploymentInput],
        artifacts: Sequence[ArtifactInput],
        settings: StackSettings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("sovereign:gcp:Site", site.id, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.leaves: list[pulumi.Resource] = []
        self.bucket_name = gcs_bucket_name(site.id, settings.bucket_suffix)
        bucket = gcp.storage.Bucket(
            f"{site.id}/bucket",
            name=self.bucket_name,
            location=site.region.upper(),
            project=settings.gcp_project,
            labels=labels_of(site.tags),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            opts=settings.options(self, self.bucket_name),
        )
        self.leaves.append(bucket)
        self.artifacts: list[str] = []
        for a in artifacts:
            placement = ArtifactPlacement(
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
            self.leaves.append(placement)
            self.artifacts.append(a.address)
        self.deployments: list[str] = []
        for d in deployments:
            endpoint = gcp.vertex.AiEndpoint(
                d.address,
                display_name=f"sovereign {d.model} at {site.id}",
                location=site.region,
                region=site.region,
                project=settings.gcp_project,
                labels=labels_of(d.tags),
                opts=child,
            )
            self.leaves.append(endpoint)
            self.deployments.append(d.address)
        self.register_outputs({"bucket": self.bucket_name})
