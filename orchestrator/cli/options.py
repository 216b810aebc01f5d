"""Options every command shares (SPEC 5): --fleet, --json, --state, --yes, --jurisdiction."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
