"""When each deployment was first observed healthy: the record rollout waves are gated on.

``rollout.healthy_for`` asks how long a wave's deployments have been *observed* healthy, so
that instant must outlive one run: it is kept in the state, as audit entries
``rollout.healthy`` (model, site, the deployment's spec, the instant) and
``rollout.unhealthy`` (the same, with what was wrong), one per change of health. The latest
entry for a (model, site) decides; a healthy deployment counts as healthy since its latest
``rollout.healthy`` entry only while that entry names the same spec (a new instance type is a
new deployment to watch). The log is hash-chained, replicated with the state, and read the
same way by every replica, the CLI and the controller (docs/gitops.md, "Rollout waves").

Only runs that hold the state lock write (``apply`` and the controller, after they observed);
``plan`` and ``status`` read, and treat a healthy deployment without an entry as healthy
since the instant they observed it. Nothing is read or written for a fleet without
``rollout.waves``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from orchestrator.fleet.model import Fleet
from orchestrator.providers.base import Resource, ResourceKind
from orchestrator.state.base import StateStore

HEALTHY = "rollout.healthy"
UNHEALTHY = "rollout.unhealthy"

Pair = tuple[str, str]


class _Entry(NamedTuple):
    healthy: bool
    spec: str
    at: datetime


def uses_waves(fleet: Fleet) -> bool:
    rollout = fleet.settings.rollout
    return rollout is not None and bool(rollout.waves)


def _spec_key(r: Resource) -> str:
    values = {k: v for k, v in r.spec_dict().items() if k != "health"}
    return json.dumps(values, sort_keys=True)


def _latest(store: StateStore) -> dict[Pair, _Entry]:
    out: dict[Pair, _Entry] = {}
    for e in store.audit.entries():
        if e.kind not in (HEALTHY, UNHEALTHY):
            continue
        p = e.payload
        try:
            at = datetime.fromisoformat(str(p["at"]))
            out[(str(p["model"]), str(p["site"]))] = _Entry(e.kind == HEALTHY, str(p["spec"]), at)
        except (KeyError, ValueError):
            continue
    return out


def _deployments(actual: Iterable[Resource]) -> dict[Pair, Resource]:
    return {(r.model, r.target): r for r in actual if r.kind is ResourceKind.DEPLOYMENT}


def healthy_since(store: StateStore, actual: Iterable[Resource]) -> dict[Pair, datetime]:
    """(model, site) -> first observed healthy, for the healthy deployments in ``actual`` that
    the state has a record for."""
    latest = _latest(store)
    out: dict[Pair, datetime] = {}
    for pair, r in _deployments(actual).items():
        entry = latest.get(pair)
        if (
            entry is not None
            and entry.healthy
            and entry.spec == _spec_key(r)
            and "health" not in r.spec_dict()
        ):
            out[pair] = entry.at
    return out


def record_health(
    store: StateStore,
    actual: Iterable[Resource],
    observed_sites: Iterable[str],
    at: datetime,
) -> int:
    """Append an entry for every change of health seen at ``observed_sites`` at ``at``;
    returns how many. The caller holds the state lock."""
    latest = _latest(store)
    seen = _deployments(actual)
    sites = set(observed_sites)
    written = 0
    for pair, r in sorted(seen.items()):
        entry = latest.get(pair)
        problem = r.spec_dict().get("health")
        spec = _spec_key(r)
        payload = {"model": pair[0], "site": pair[1], "spec": spec, "at": at.isoformat()}
        if problem is None and (entry is None or not entry.healthy or entry.spec != spec):
            store.audit.append(HEALTHY, payload)
            written += 1
        elif problem is not None and (entry is None or entry.healthy):
            store.audit.append(UNHEALTHY, {**payload, "detail": str(problem)})
            written += 1
    for pair, entry in sorted(latest.items()):
        if entry.healthy and pair not in seen and pair[1] in sites:
            payload = {"model": pair[0], "site": pair[1], "spec": entry.spec, "at": at.isoformat()}
            store.audit.append(UNHEALTHY, {**payload, "detail": "not deployed"})
            written += 1
    return written
