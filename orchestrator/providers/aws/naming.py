"""Deterministic names and the ownership tags of everything the AWS provider creates.

Names are derived, never stored: the same fleet always addresses the same bucket and endpoint,
so a lost state file does not orphan cloud resources. Tags are how ``observe`` tells Sovereign's
resources from everything else in the account: nothing without them is read or touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from orchestrator.providers.naming import bucket_name, fit, short_hash, squash

TAG_MANAGED = "sovereign:managed"
TAG_SITE = "sovereign:site"
TAG_MODEL = "sovereign:model"
SUFFIX_OPTION = "bucket_suffix"

__all__ = [
    "SUFFIX_OPTION",
    "TAG_MANAGED",
    "TAG_MODEL",
    "TAG_SITE",
    "bucket_name",
    "endpoint_config_name",
    "is_managed_by",
    "managed_tags",
    "sagemaker_base_name",
    "sagemaker_site_prefix",
    "tag_dict",
    "tag_list",
]

_SAGEMAKER_MAX = 63


def sagemaker_base_name(site_id: str, model_id: str) -> str:
    """SageMaker model and endpoint name of a deployment (``[a-zA-Z0-9](-*[a-zA-Z0-9])*``).

    Leaves room for the ``-<hash>`` an endpoint configuration name adds.
    """
    raw = f"sov-{site_id}-{model_id}"
    return fit(squash(raw, "a-z0-9"), _SAGEMAKER_MAX - 9, raw)


def sagemaker_site_prefix(site_id: str) -> str:
    """A prefix every SageMaker name of the site contains (a list filter; tags decide)."""
    return squash(f"sov-{site_id}-", "a-z0-9")[:40]


def endpoint_config_name(base: str, spec_key: str) -> str:
    """Endpoint configurations are immutable: one per spec, named by the spec's hash."""
    return f"{base}-{short_hash(spec_key)}"


def managed_tags(site_id: str, model_id: str | None = None) -> dict[str, str]:
    tags = {TAG_MANAGED: "true", TAG_SITE: site_id}
    if model_id is not None:
        tags[TAG_MODEL] = model_id
    return tags


def is_managed_by(tags: dict[str, str], site_id: str) -> bool:
    """True only for resources Sovereign created for this very site."""
    return tags.get(TAG_MANAGED) == "true" and tags.get(TAG_SITE) == site_id


class Tag(TypedDict):
    """An AWS tag as S3 and SageMaker take it (their stubs' ``TagTypeDef``)."""

    Key: str
    Value: str


def tag_list(tags: dict[str, str]) -> list[Tag]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_dict(tags: Sequence[Tag] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}
