"""From command-line choices to a ready ``Gateway``: one picklable spec, one builder.

``sovereign gateway`` builds its gateway here, and so does every worker process of
``--workers N`` (each worker builds its own from the same spec: its own table, reloads, stubs,
health and metrics; nothing is shared but the listening port).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.fleet.model import Fleet
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.authn import Authenticator
from orchestrator.gateway.sources import AppliedFleetSource, FleetSource, WorkingFleetSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys

__all__ = ["GatewaySpec", "build_gateway"]


@dataclass(frozen=True)
class GatewaySpec:
    fleet: Path
    state: str | None
    token_keys: tuple[Path, ...]
    token_audience: str
    token_issuer: str | None
    serve_working_fleet: bool
    settings: GatewaySettings


def build_gateway(spec: GatewaySpec) -> Gateway:
    """The gateway the spec describes (keys read, state opened; no table loaded yet)."""
    from orchestrator.fleet.loader import load_fleet, load_fleet_files
    from orchestrator.state import open_store

    authenticator = Authenticator(
        TokenVerifier(load_token_keys(spec.token_keys), spec.token_audience, spec.token_issuer)
    )
    source: FleetSource
    if spec.serve_working_fleet:
        source = WorkingFleetSource(spec.fleet, load_fleet)
    else:
        store = open_store(spec.state, spec.fleet, create=False)
        label = f"{spec.fleet} (applied)"

        def from_files(files: Mapping[str, bytes]) -> Fleet:
            return load_fleet_files(files, label)

        source = AppliedFleetSource(
            store,
            from_files,
            object_signal_interval_s=spec.settings.object_signal_interval_s,
        )
    return Gateway(source, authenticator, spec.settings)
