"""Options more than one command takes, defined once: --fleet, --json, --state, --yes,
--jurisdiction, --at, --sites, --engine, --allow-outage (docs/cli.md, "Conventions every command
follows"). A command module imports them from here, never from another command's module, so
importing it never pulls in a sibling command (and its dependencies) as a side effect.

Every command spells its ``--json`` parameter ``json_out: JsonOpt = False``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.errors import UsageError

FleetOpt = Annotated[
    Path,
    typer.Option(
        "--fleet",
        help="Fleet directory: region profiles, models.yaml, directives/, fleet.yaml.",
        show_default=True,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Machine-readable output on stdout (nothing else there).")
]
StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="State location: a path or sqlite:///PATH (default .sovereign/state.db beside the "
        "fleet), s3://BUCKET/PREFIX or gs://BUCKET/PREFIX.",
    ),
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
]

DEFAULT_FLEET = Path("regions")
JurisdictionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--jurisdiction",
        metavar="J",
        help="Act only on the sites of jurisdiction J (repeatable); the routing table is always "
        "recompiled for the whole fleet. Default: every jurisdiction.",
    ),
]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="Evaluate the law at this instant (ISO 8601, e.g. 2026-06-13T00:00:00Z; default now).",
    ),
]
SitesOpt = Annotated[
    str | None,
    typer.Option(
        "--sites",
        help="'local': run every site on the local provider (directories under "
        ".sovereign/sites, synthetic artifacts for s3:// and gs:// sources); 'own': each "
        "site's own provider. apply records it in the state, and later commands on that "
        "state use it unless given another. Default: what the state recorded, else 'own'.",
    ),
]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Who carries out aws and gcp sites: 'builtin' (default, each site's provider) or "
        "'pulumi' (each jurisdiction's stack of infra/, through the Pulumi CLI).",
    ),
]
AllowOutageOpt = Annotated[
    str | None,
    typer.Option(
        "--allow-outage",
        metavar="REASON",
        help="Apply although the safety interlock refuses the plan; REASON is audited.",
    ),
]


def sites_local(value: str | None) -> bool | None:
    """``--sites``: True for 'local', False for 'own', None when not given (the state's
    recorded choice applies: ``reconcile.session.recorded_sites``)."""
    if value is None:
        return None
    if value not in ("local", "own"):
        raise UsageError(
            f"--sites {value!r} is not supported",
            hint="--sites local runs every site on the local provider; --sites own uses each "
            "site's own provider",
        )
    return value == "local"
