"""Options more than one command takes, defined once: --fleet, --json, --state, --yes,
--jurisdiction, --at, --sites, --engine, --allow-outage (docs/cli.md, "Conventions every command
follows"). A command module imports them from here, never from another command's module, so
importing it never pulls in a sibling command (and its dependencies) as a side effect.

Every command spells its ``--json`` parameter ``json_out: JsonOpt = False``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

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


# The decision log of `gateway` and `authz` (docs/evidence.md, "The decision log").
DecisionLogOpt = Annotated[
    Path | None,
    typer.Option(
        "--decision-log",
        metavar="FILE",
        help="Write one JSON line per decision to FILE (docs/evidence.md): what `sovereign "
        "evidence` re-judges. Written off the request path, rotated by size to "
        "FILE.<UTC instant>; with --workers N, worker i writes FILE.wi.",
    ),
]
DecisionLogMaxBytesOpt = Annotated[
    int, typer.Option(help="Rotate the decision log when it would pass this size (bytes).")
]
DecisionLogWhenFullOpt = Annotated[
    str,
    typer.Option(
        help="When the decision log cannot keep up or cannot be written: 'refuse' answers 503 "
        "(no unlogged decision is served), 'drop' decides anyway and leaves a gap in the "
        "decision ids."
    ),
]
GatewayIdOpt = Annotated[
    str | None,
    typer.Option(
        help="This gateway's id in its decision ids (default: the host name); each start adds "
        "a random part, so a restart never reuses a decision id."
    ),
]
DEFAULT_DECISION_LOG_MAX_BYTES = 100 * 1024 * 1024


def decision_log_settings(
    path: Path | None, max_bytes: int, when_full: str, gateway_id: str | None
) -> Any:
    """The ``DecisionLogSettings`` the options describe (None without --decision-log); the
    gateway stack is imported only when a log is asked for."""
    if when_full not in ("refuse", "drop"):
        raise UsageError(
            f"--decision-log-when-full {when_full!r} is not a choice",
            hint="use 'refuse' (default: no unlogged decision is served) or 'drop'",
        )
    if max_bytes < 1024:
        raise UsageError(f"--decision-log-max-bytes must be >= 1024, got {max_bytes}")
    if gateway_id is not None and (
        not gateway_id or not all(c.isalnum() or c in "-._" for c in gateway_id)
    ):
        raise UsageError(
            f"--gateway-id {gateway_id!r} is not valid",
            hint="letters, digits, '-', '.' and '_' only, e.g. gw-eu-1",
        )
    if path is None:
        return None
    from orchestrator.gateway.decisionlog import DecisionLogSettings, default_gateway_id

    return DecisionLogSettings(
        path,
        gateway_id or default_gateway_id(),
        max_bytes,
        when_full="drop" if when_full == "drop" else "refuse",
    )


# -- what the gateway and `sovereign authz` both take ------------------------------------------

# docs/gateway.md: the audience defaults to "sovereign". A literal here, so that `--help` and
# every other command do not import the gateway stack (JWT, httpx, starlette) at start-up;
# tests/cli asserts it equals orchestrator.gateway.tokens.DEFAULT_AUDIENCE.
DEFAULT_AUDIENCE = "sovereign"

TokenKeyOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--token-key",
        metavar="FILE",
        help="Public key that signs principal tokens: a PEM (Ed25519, EC P-256/384/521 or RSA) "
        "or a JWKS JSON file. Repeatable. API keys of attested tenants (sovereign key create) "
        "are accepted beside tokens.",
    ),
]
IssuersOpt = Annotated[
    Path | None,
    typer.Option(
        "--issuers",
        metavar="FILE",
        help="YAML list of OIDC issuers whose tokens are accepted: issuer, jwks_uri or "
        "discovery, audience, claims mapping, optional tenant (docs/identity.md).",
    ),
]
HostOpt = Annotated[str, typer.Option(help="Address to listen on.")]
TokenIssuerOpt = Annotated[
    str | None, typer.Option(help="Required 'iss' of tokens (unchecked if omitted).")
]
TokenAudienceOpt = Annotated[str, typer.Option(help="Required 'aud' of tokens.")]
ReloadIntervalOpt = Annotated[
    float, typer.Option(help="Seconds between checks for a newly applied fleet.")
]
ProbeIntervalOpt = Annotated[
    float, typer.Option(help="Seconds between upstream /healthz probes (0: off).")
]
SignalIntervalOpt = Annotated[
    float,
    typer.Option(
        help="S3/GCS state: seconds between reads of the state object's version (one HEAD / "
        "metadata request each; 0: off, the serial is read every --reload-interval only)."
    ),
]
ServeWorkingFleetOpt = Annotated[
    bool,
    typer.Option(
        "--serve-working-fleet",
        help="Development only: serve the fleet directory as it is on disk (not what was "
        "applied); reload on edits.",
    ),
]
StubUpstreamsOpt = Annotated[
    bool,
    typer.Option(
        "--stub-upstreams",
        help="Demo/development: serve every site from a stub upstream on loopback instead of "
        "its endpoint.",
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        help="Processes sharing the port(s) (SO_REUSEPORT), each with its own table reload, "
        "health and metrics."
    ),
]


def positive(name: str, value: float, allow_zero: bool = False) -> None:
    """A finite number of seconds: NaN (every comparison false) and infinity are refused."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UsageError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}",
            hint=f"a number of seconds, e.g. {name} 5",
        )
