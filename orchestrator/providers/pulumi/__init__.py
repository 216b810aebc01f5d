"""Pulumi: the engine behind ``--engine pulumi`` and the artifact resource of ``infra/``.

``stacks`` holds the engine's rules as pure functions; ``automation`` is the only module that
drives the Pulumi CLI (``pulumi.automation``, imported lazily); ``engine`` is the provider the
reconciler calls; ``artifacts`` is the dynamic resource the program places weights with.
Importing this package imports no ``pulumi`` module.
"""

from __future__ import annotations

from orchestrator.providers.pulumi.engine import PulumiEngine

__all__ = ["PulumiEngine"]
