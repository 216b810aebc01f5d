"""Which engine carries out a run's site changes, and what the Pulumi engine is handed.

``builtin`` (the default): each site's own provider. ``pulumi``: the aws and gcp sites go to
``providers.pulumi.PulumiEngine`` (their jurisdiction's stack), local sites stay local. The
engine gets, per jurisdiction with such sites, the export of its desired state at the run's
instant (the stack's config) and a backend beside the state (``state.url.pulumi_backend_url``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from orchestrator.fleet.model import Fleet
from orchestrator.planning.export import export_stack_input
from orchestrator.providers.pulumi.engine import (
    BACKEND_OPTION,
    INPUT_OPTION,
    WORK_DIR_OPTION,
)
from orchestrator.providers.pulumi.stacks import check_engine, engine_handles
from orchestrator.state.url import PULUMI_DIR, pulumi_backend_url

__all__ = ["check_engine", "engine_options", "provider_for"]


def provider_for(engine: str, site_provider: str) -> str:
    """The registered provider that carries out a site's changes under ``engine``."""
    return "pulumi" if engine == "pulumi" and engine_handles(site_provider) else site_provider


def engine_options(
    fleet: Fleet, fleet_dir: Path, at: datetime, state_url: str | None
) -> dict[str, str]:
    """The provider options of a ``--engine pulumi`` run (``ProviderContext.options``)."""
    options = {
        BACKEND_OPTION: pulumi_backend_url(state_url, fleet_dir),
        WORK_DIR_OPTION: str((fleet_dir / ".sovereign" / PULUMI_DIR / "work").resolve()),
    }
    for j in fleet.jurisdictions.values():
        if any(engine_handles(fleet.sites[s].provider) for s in j.sites):
            document = export_stack_input(fleet, at, j.id)
            options[INPUT_OPTION + j.id] = json.dumps(document, sort_keys=True)
    return options
