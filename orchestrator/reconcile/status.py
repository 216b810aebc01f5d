"""What is deployed where (observed, not believed), and who is routed where.

``sovereign status`` answers the on-call questions in one place: which deployments the sites
really hold and whether they are healthy, which state serial and lineage we are at, whether the
fleet the gateway serves (the applied fleet) is the working fleet, and for every jurisdiction
and model the route of a resident whose nationality is unknown (the fail-closed default the
gateway uses when a token carries no nationality), without the drained sites, which it lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.fleet.drain import NO_DRAINS, Drains
from orchestrator.fleet.instants import format_utc
from orchestrator.fleet.loader import load_fleet_files
from orchestrator.fleet.model import Fleet
from orchestrator.fleet.windows import WindowState, format_duration, window_state
from orchestrator.planning.deferral import Health, Pair, rollout_gate
from orchestrator.planning.departed import Departed
from orchestrator.planning.desired import desired_pairs
from orchestrator.planning.guarantees import shortfalls
from orchestrator.planning.plan import Shortfall, Unobservable
from orchestrator.policy.principal import Principal
from orchestrator.policy.rules import route_without
from orchestrator.policy.table import RouteTable
from orchestrator.providers.base import ResourceKind
from orchestrator.reconcile.session import (
    Session,
    desired_of,
    observe_each,
    rollout_health,
    unobservable_of,
)


@dataclass(frozen=True)
class DeploymentStatus:
    site: str
    model: str
    healthy: bool
    detail: str
    desired: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "model": self.model,
            "healthy": self.healthy,
            "detail": self.detail,
            "desired": self.desired,
        }


@dataclass(frozen=True)
class RouteStatus:
    jurisdiction: str
    residency: str
    model: str
    route: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.jurisdiction,
            "residency": self.residency,
            "model": self.model,
            "route": list(self.route),
            "refused": not self.route,
        }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else format_utc(t)


@dataclass(frozen=True)
class WindowStatus:
    """A jurisdiction's change window at the status instant (docs/gitops.md)."""

    jurisdiction: str
    timezone: str
    state: WindowState

    def to_json(self) -> dict[str, Any]:
        w = self.state.window
        return {
            "jurisdiction": self.jurisdiction,
            "timezone": self.timezone,
            "open": self.state.open,
            "window": None
            if w is None
            else {"kind": w.kind.value, "cron": w.cron, "duration": format_duration(w.duration)},
            "since": _iso(self.state.opened_at),
            "next_opening": _iso(self.state.next_opening),
            "closes_at": _iso(self.state.closes_at),
        }


@dataclass(frozen=True)
class RolloutStatus:
    """A model not yet deployed everywhere it is desired, and the wave it has reached."""

    model: str
    wave: str  # the first wave still waiting for it, e.g. "wave 2 (UK, IN)"
    state: str  # rolling (its gate passed) | waiting (earlier waves not healthy long enough)
    #             | stopped (an earlier wave failed)
    message: str
    not_before: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "wave": self.wave,
            "state": self.state,
            "message": self.message,
            "not_before": _iso(self.not_before),
        }


def window_statuses(fleet: Fleet, at: datetime) -> tuple[WindowStatus, ...]:
    return tuple(
        WindowStatus(j.id, j.changes.timezone, window_state(j.changes, at))
        for j in sorted(fleet.jurisdictions.values(), key=lambda j: j.id)
        if j.changes is not None
    )


def rollout_statuses(
    fleet: Fleet, at: datetime, want: frozenset[Pair], health: dict[Pair, Health]
) -> tuple[RolloutStatus, ...]:
    """Per model with desired deployments not deployed yet: the first wave that waits for
    it and its gate (the same gate ``plan`` defers changes with, planning.deferral)."""
    rollout = fleet.settings.rollout
    if rollout is None or not rollout.waves:
        return ()
    pending = frozenset(p for p in want if p not in health)
    out: list[RolloutStatus] = []
    for model in sorted({m for m, _ in pending}):
        wave = min(rollout.wave_of(fleet.sites[s].jurisdiction) for m, s in pending if m == model)
        gate = rollout_gate(fleet, rollout, model, wave, at, want, pending, health)
        state = "stopped" if gate.failed else "rolling" if gate.open else "waiting"
        message = gate.message or "its gate passed: the next apply or pass carries it out"
        out.append(
            RolloutStatus(model, rollout.describe_wave(wave), state, message, gate.not_before)
        )
    return tuple(out)


@dataclass(frozen=True)
class Status:
    at: datetime
    lineage: str
    serial: int
    working_digest: str
    applied_digest: str | None
    deployments: tuple[DeploymentStatus, ...]
    missing: tuple[tuple[str, str], ...]  # desired (model, site) pairs not deployed
    routes: tuple[RouteStatus, ...]
    routes_from: str  # "applied" (what the gateway serves) or "working" (nothing applied yet)
    # min_sites_per_model not met by the healthy deployments observed now, and why
    shortfalls: tuple[Shortfall, ...] = ()
    drains: Drains = NO_DRAINS
    # sites that left the fleet and still hold what Sovereign placed there (teardown pending)
    departed: tuple[Departed, ...] = ()
    # sites (and route targets) that could not be observed now: target -> why; the others
    # are shown all the same (an outage is when status is needed most)
    unobservable: tuple[Unobservable, ...] = ()
    # jurisdictions with change windows: the window now and the next opening
    windows: tuple[WindowStatus, ...] = ()
    # models still rolling out wave by wave (fleet.yaml rollout.waves)
    rollouts: tuple[RolloutStatus, ...] = ()

    @property
    def in_sync(self) -> bool:
        return self.applied_digest == self.working_digest

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "state": {"lineage": self.lineage, "serial": self.serial},
            "fleet": {
                "working_digest": self.working_digest,
                "applied_digest": self.applied_digest,
                "in_sync": self.in_sync,
            },
            "deployments": [d.to_json() for d in self.deployments],
            "missing": [{"model": m, "site": s} for m, s in self.missing],
            "routing": [r.to_json() for r in self.routes],
            "routing_from": self.routes_from,
            "warnings": [w.to_json() for w in self.shortfalls],
            "drains": [{**d.to_json(), "active": d.active(self.at)} for d in self.drains.entries],
            "departed": [d.to_json() for d in self.departed],
            "unobservable": [u.to_json() for u in self.unobservable],
            "windows": [w.to_json() for w in self.windows],
            "rollouts": [r.to_json() for r in self.rollouts],
        }


def representative_residency(fleet: Fleet, jurisdiction_id: str) -> str:
    """The jurisdiction's first country (sorted): its residents share one home and one route
    under every residency-free rule."""
    return sorted(fleet.jurisdictions[jurisdiction_id].countries)[0]


def routes_per_jurisdiction(
    fleet: Fleet, at: datetime, drained: frozenset[str] = frozenset()
) -> tuple[RouteStatus, ...]:
    """The route of each jurisdiction's resident of unknown nationality, per model, without
    the drained sites (as the gateway serves it)."""
    table = RouteTable.compile(fleet)
    out: list[RouteStatus] = []
    for j in sorted(fleet.jurisdictions.values(), key=lambda j: j.id):
        if not j.countries:
            continue
        residency = representative_residency(fleet, j.id)
        principal = Principal.of(residency)
        for m in sorted(fleet.models):
            route = route_without(table.route(m, principal, at), drained)
            out.append(RouteStatus(j.id, residency, m, route))
    return tuple(out)


def collect_status(session: Session) -> Status:
    fleet = session.fleet
    # Site by site, as the planner observes: one site that cannot be observed is reported,
    # never allowed to hide the others.
    observed, blind = observe_each(session, desired_of(session))
    want = desired_pairs(fleet, session.at)
    deployments = tuple(
        sorted(
            (
                DeploymentStatus(
                    site=r.target,
                    model=r.model,
                    healthy="health" not in r.spec_dict(),
                    detail=r.spec_dict().get("health", "serving"),
                    desired=(r.model, r.target) in want,
                )
                for r in observed
                if r.kind is ResourceKind.DEPLOYMENT
            ),
            key=lambda d: (d.site, d.model),
        )
    )
    have = {(d.model, d.site) for d in deployments if d.healthy}
    applied = session.store.applied_fleet()
    # Routing is shown for the fleet the gateway serves: the applied one, when there is one.
    routed_fleet = fleet if applied is None else load_fleet_files(applied.files, label="applied")
    drains = session.store.drains()
    return Status(
        at=session.at,
        lineage=session.store.lineage(),
        serial=session.store.serial(),
        working_digest=session.digest,
        applied_digest=None if applied is None else applied.digest,
        deployments=deployments,
        missing=tuple(
            sorted(((m, s) for m, s in want - have if s not in blind), key=lambda p: (p[1], p[0]))
        ),
        routes=routes_per_jurisdiction(routed_fleet, session.at, drains.sites_at(session.at)),
        routes_from="working" if applied is None else "applied",
        shortfalls=shortfalls(fleet, session.at, have),
        drains=drains,
        departed=tuple(d for _, d in sorted(session.departed.items())),
        unobservable=unobservable_of(session, blind),
        windows=window_statuses(fleet, session.at),
        rollouts=rollout_statuses(fleet, session.at, want, rollout_health(session, observed)),
    )
