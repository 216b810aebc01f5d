"""From command-line choices to a ready ``Gateway`` or ``Authz``: one picklable spec each.

``sovereign gateway`` and ``sovereign authz`` build theirs here (``spec.build()``), and so does
every worker process of ``--workers N`` (each worker builds its own from the same spec: its own
table, reloads, stubs, health and metrics; nothing is shared but the listening ports).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self

from orchestrator.errors import StateError
from orchestrator.fleet.model import Fleet
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.authn import Authenticator, KeyBook
from orchestrator.gateway.authz import Authz
from orchestrator.gateway.issuers import Issuers, load_issuers
from orchestrator.gateway.sources import AppliedFleetSource, FleetSource, WorkingFleetSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys

__all__ = ["AuthzSpec", "GatewaySpec", "build_authz", "build_gateway"]


@dataclass(frozen=True)
class GatewaySpec:
    fleet: Path
    state: str | None
    token_keys: tuple[Path, ...]
    token_audience: str
    token_issuer: str | None
    serve_working_fleet: bool
    settings: GatewaySettings
    issuers: Path | None = None  # --issuers FILE (docs/identity.md)

    def build(self) -> Gateway:
        return build_gateway(self)

    def for_worker(self, index: int) -> Self:
        """Worker ``index`` of ``--workers``: its own decision log (``FILE.wN``, id
        ``ID.wN``), so each file has one writer and one sequence."""
        log = self.settings.decision_log
        if log is None:
            return self
        return replace(self, settings=replace(self.settings, decision_log=log.for_worker(index)))

    def without_decision_log(self) -> Self:
        """The same spec opening no decision log (the supervisor's own checks)."""
        if self.settings.decision_log is None:
            return self
        return replace(self, settings=replace(self.settings, decision_log=None))


@dataclass(frozen=True)
class AuthzSpec(GatewaySpec):
    grpc_port: int | None = None  # None: HTTP only
    grpc_host: str = "127.0.0.1"

    def build(self) -> Authz:  # type: ignore[override]
        return build_authz(self)


def build_gateway(spec: GatewaySpec) -> Gateway:
    """The gateway the spec describes (keys read, state opened; no table loaded yet)."""
    source, authenticator = _source_and_authenticator(spec)
    return Gateway(source, authenticator, spec.settings)


def build_authz(spec: AuthzSpec) -> Authz:
    """``sovereign authz`` as the spec describes it (the same source and authenticator as the
    gateway's; no table loaded yet)."""
    source, authenticator = _source_and_authenticator(spec)
    return Authz(
        source, authenticator, spec.settings, grpc_port=spec.grpc_port, grpc_host=spec.grpc_host
    )


def _source_and_authenticator(spec: GatewaySpec) -> tuple[FleetSource, Authenticator]:
    from orchestrator.fleet.loader import load_fleet, load_fleet_files
    from orchestrator.state import open_store

    tokens = None
    if spec.token_keys:
        tokens = TokenVerifier(
            load_token_keys(spec.token_keys), spec.token_audience, spec.token_issuer
        )
    issuers = Issuers(load_issuers(spec.issuers)) if spec.issuers is not None else None
    authenticator = Authenticator(tokens, KeyBook(), issuers)
    source: FleetSource
    if spec.serve_working_fleet:
        # API keys still come from the state, when there is one (docs/identity.md).
        try:
            keys_from = open_store(spec.state, spec.fleet, create=False)
        except StateError:
            keys_from = None
        source = WorkingFleetSource(spec.fleet, load_fleet, keys_from)
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
    return source, authenticator
