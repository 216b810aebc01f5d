"""Providers: one module or package per cloud, found through an explicit registry.

Cloud SDKs are imported lazily, inside the provider module, so that ``validate`` and
``explain`` never pay for importing boto3 or the Google client.
"""

from __future__ import annotations

import importlib

from orchestrator.errors import UnknownProviderError
from orchestrator.fleet.model import ProviderName
from orchestrator.providers.base import Provider, ProviderContext, ProviderFactory, RouteProvider

# name -> "module:factory". Explicit, so a type checker and a reader can follow it. The kinds of
# site (``fleet.model.ProviderName``) are keys here by the enum itself; the rest serve sites of
# those kinds (DNS, the Pulumi engine). tests/providers checks every ProviderName has its entry.
_REGISTRY: dict[str, str] = {
    ProviderName.LOCAL: "orchestrator.providers.local:LocalProvider",
    ProviderName.AWS: "orchestrator.providers.aws:AwsProvider",
    ProviderName.GCP: "orchestrator.providers.gcp:GcpProvider",
    "route53": "orchestrator.providers.aws.route53:Route53Provider",
    "pulumi": "orchestrator.providers.pulumi:PulumiEngine",  # --engine pulumi (aws, gcp sites)
}


def provider_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def factory_for(name: str) -> ProviderFactory:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UnknownProviderError(
            f"unknown provider {name!r}", hint=f"valid providers: {', '.join(provider_names())}"
        ) from None
    module_name, _, attr = target.partition(":")
    factory: ProviderFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def create_provider(name: str, context: ProviderContext) -> Provider | RouteProvider:
    return factory_for(name)(context)
