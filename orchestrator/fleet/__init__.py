"""The fleet: region profiles, model catalog, signed directives and fleet settings.

``load_fleet(path)`` parses YAML with pydantic (strict, unknown keys rejected), maps every
problem to FILE:LINE: field, verifies directive signatures and returns frozen ``Fleet`` values.
"""

from orchestrator.fleet.model import (
    ALL_MODELS,
    EVERYONE,
    Action,
    Audience,
    Authority,
    Directive,
    DnsSettings,
    Fleet,
    FleetSettings,
    Jurisdiction,
    Model,
    ProviderName,
    Site,
    Unlisted,
)

__all__ = [
    "ALL_MODELS",
    "EVERYONE",
    "Action",
    "Audience",
    "Authority",
    "Directive",
    "DnsSettings",
    "Fleet",
    "FleetSettings",
    "Jurisdiction",
    "Model",
    "ProviderName",
    "Site",
    "Unlisted",
]
