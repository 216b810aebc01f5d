"""One pass of the controller: its settings, its outcome and what it reports.

Part of the controller (``orchestrator.reconcile.controller``: its docstring says what the
controller does and when).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.fleet.instants import format_utc
from orchestrator.policy.epochs import EpochIndex
from orchestrator.reconcile.controller.git import GitSource
from orchestrator.state.lease import DEFAULT_LEASE_SECONDS

OPERATION = "controller"


class Outcome(StrEnum):
    IN_SYNC = "in_sync"  # nothing to do
    APPLIED = "applied"  # changes applied, every site ok
    PARTIAL = "partial"  # applied, some sites failed (apply's exit 3)
    REFUSED = "refused"  # the interlock refused the plan (never overridden)
    LOCKED = "locked"  # another run holds the state (a standby replica, or a human apply)
    FAILED = "failed"  # anything else: invalid fleet, unreachable cloud, git pull failed

    @property
    def exit_code(self) -> int:
        return {
            Outcome.IN_SYNC: 0,
            Outcome.APPLIED: 0,
            Outcome.PARTIAL: 3,
            Outcome.REFUSED: 1,
            Outcome.LOCKED: 4,
            Outcome.FAILED: 1,
        }[self]


@dataclass(frozen=True)
class PassResult:
    """What one reconcile pass did."""

    outcome: Outcome
    started: datetime
    changes: int = 0
    drift: int = 0  # changes whose cause is drift
    plan_sha256: str | None = None
    message: str = ""
    failed_sites: tuple[str, ...] = ()
    next_epoch: datetime | None = None
    # changes waiting for a change window or a rollout wave, by why (planning.deferral)
    deferred: Mapping[str, int] = field(default_factory=dict)
    # the first instant a deferred change may go (a window opening, a wave's gate); None: none
    # known (a wave still waiting for its deployments to be observed healthy)
    next_deferred: datetime | None = None
    # models whose rollout a failed wave stopped -> the message saying so
    stopped: Mapping[str, str] = field(default_factory=dict)
    # jurisdiction -> whether its change window is open (those with windows only)
    windows: Mapping[str, bool] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "exit_code": self.outcome.exit_code,
            "started": format_utc(self.started),
            "changes": self.changes,
            "drift": self.drift,
            "plan_sha256": self.plan_sha256,
            "message": self.message,
            "failed_sites": list(self.failed_sites),
            "next_epoch": (None if self.next_epoch is None else format_utc(self.next_epoch)),
            "deferred": dict(self.deferred),
            "next_deferred": None if self.next_deferred is None else format_utc(self.next_deferred),
            "rollouts_stopped": dict(self.stopped),
            "windows_open": dict(self.windows),
        }


@dataclass
class ControllerSettings:
    fleet_dir: Path
    state_url: str | None = None
    interval: float = 60.0  # drift check period, seconds
    sites_local: bool | None = False  # None: what the state's last apply recorded
    git: GitSource | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    standby_interval: float | None = None  # default: min(interval, lease_seconds / 2)
    backoff_base: float = 1.0
    backoff_max: float = 300.0

    @property
    def standby(self) -> float:
        if self.standby_interval is not None:
            return self.standby_interval
        return max(0.05, min(self.interval, self.lease_seconds / 2))


def next_epoch_after(fleet_dir: Path, now: datetime) -> datetime | None:
    """The first directive instant after ``now`` in the fleet on disk (None: none, or the fleet
    does not load; the pass that loads it reports why)."""
    from orchestrator.fleet.loader import load_fleet

    try:
        index = EpochIndex(load_fleet(fleet_dir))
    except Exception:  # noqa: BLE001 - a fleet that does not load has no epochs; the pass says why
        return None
    _, end = index.window(now)
    return end if end < _FAR else None


_FAR = datetime(9000, 1, 1, tzinfo=UTC)
