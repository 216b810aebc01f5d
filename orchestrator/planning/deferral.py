"""Which configuration changes wait for a change window or a rollout wave, and which never do
(docs/gitops.md, "Change windows and rollout waves").

People change service on a schedule; the law does not wait. A change may wait only when its
cause is ``config`` and it places or removes something at a site of the fleet for a reason
other than the law. So these never wait:

* changes caused by a directive (``directive:<id>``: a withdraw's deletions, the routing table);
* the removal of what R2 (export) forbids (a config deletion where the model may no longer be
  placed) or R4 (a withdraw, already ``directive:<id>``);
* drift repair (``drift``);
* fleet-wide route resources (the routing table, DNS: the law travels in them);
* the teardown of sites or jurisdictions that left the fleet (decommission has its own gate);
* drains, which are runbook commands and never part of a plan.

A change that may wait, waits while its jurisdiction's window is closed
(``fleet.windows.window_state``), and, with ``rollout.waves`` in fleet.yaml, while a
deployment of the same model in an earlier wave is not yet observed healthy for
``healthy_for`` (or still has changes of its own to make). The gate is level-triggered: it
looks at every deployment of the model desired in the earlier waves, so a change confined to
the first wave that has the model never waits for a wave, and a model whose deployment in an
earlier wave is unhealthy stops the later waves ("a failed wave stops the later ones") until
it has been healthy for ``healthy_for`` again.

Pure: the fleet, the instant, the plan's changes and what was observed in; changes to carry
out and deferred changes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from orchestrator.fleet.instants import format_utc
from orchestrator.fleet.model import Fleet, Rollout
from orchestrator.fleet.windows import WindowState, format_duration, window_state
from orchestrator.planning.gc_paused import gc_paused
from orchestrator.planning.plan import CauseKind, Change, Deferred, WaitReason
from orchestrator.policy.rules import export_allowed
from orchestrator.providers.base import Op, Resource, ResourceKind

__all__ = [
    "Health",
    "waves_of_desired",
    "Pair",
    "RolloutGate",
    "defer",
    "may_wait",
    "observed_health",
    "rollout_gate",
    "window_states",
]

Pair = tuple[str, str]  # (model, site)


class Health(NamedTuple):
    """A deployment as observed: healthy or not, since when it has been seen healthy."""

    healthy: bool
    since: datetime | None  # first observed healthy (this run of healthy observations)
    detail: str  # why not healthy ("status 'failed'"), or "serving"


class RolloutGate(NamedTuple):
    """Whether changes of ``model`` in ``wave`` may go: every deployment of the model desired
    in the earlier waves deployed, unchanged, and healthy for ``healthy_for``."""

    model: str
    wave: int
    open: bool
    failed: bool  # an earlier wave holds an unhealthy deployment: the rollout stopped
    blocking_wave: int | None  # the earlier wave that holds it back
    message: str
    not_before: datetime | None  # when the gate opens if nothing changes; None: unknown


_CONFIG = CauseKind.CONFIG.value
_PLACED = frozenset({ResourceKind.ARTIFACT, ResourceKind.DEPLOYMENT})


def may_wait(fleet: Fleet, change: Change) -> bool:
    """Whether ``change`` is one that waits for windows and waves (see the module docstring)."""
    if change.cause != _CONFIG or change.kind not in _PLACED:
        return False
    site = fleet.sites.get(change.target)
    if site is None or site.jurisdiction not in fleet.jurisdictions:
        return False  # a site leaving the fleet: its teardown is decommission's business
    if change.op is Op.DELETE and change.model in fleet.models:
        return export_allowed(fleet, change.model, change.target)  # R2 forbids: never waits
    return True


def observed_health(
    actual: Iterable[Resource], since: Mapping[Pair, datetime], at: datetime
) -> dict[Pair, Health]:
    """(model, site) -> health of every deployment observed. ``since`` holds when each was
    first observed healthy (the state's record); a healthy one without a record is healthy
    since ``at`` (this observation is its first)."""
    out: dict[Pair, Health] = {}
    for r in actual:
        if r.kind is not ResourceKind.DEPLOYMENT:
            continue
        problem = r.spec_dict().get("health")
        pair = (r.model, r.target)
        if problem is None:
            out[pair] = Health(True, since.get(pair, at), "serving")
        else:
            out[pair] = Health(False, None, str(problem))
    return out


def window_states(fleet: Fleet, at: datetime) -> dict[str, WindowState]:
    """Every jurisdiction's window state at ``at`` (always open without ``changes``)."""
    return {j.id: window_state(j.changes, at) for j in fleet.jurisdictions.values()}


def _iso(t: datetime) -> str:
    return format_utc(t)


def rollout_gate(
    fleet: Fleet,
    rollout: Rollout,
    model: str,
    wave: int,
    at: datetime,
    desired: frozenset[Pair] | Mapping[str, list[tuple[int, str]]],
    pending: frozenset[Pair],
    health: Mapping[Pair, Health],
) -> RolloutGate:
    """The gate of ``model``'s changes in ``wave`` (0-based), judged on the earlier waves.
    ``desired``: the desired pairs, or ``waves_of_desired`` of them (the planner's index)."""
    index = desired if isinstance(desired, Mapping) else waves_of_desired(fleet, rollout, desired)
    earlier: dict[int, list[str]] = {}
    for w, s in index.get(model, ()):
        if w < wave:
            earlier.setdefault(w, []).append(s)
    latest: datetime | None = None
    for w in sorted(earlier):
        name = rollout.describe_wave(w)
        for s in sorted(earlier[w]):
            seen = health.get((model, s))
            if seen is not None and not seen.healthy:
                return RolloutGate(
                    model,
                    wave,
                    False,
                    True,
                    w,
                    f"{name} failed: {model} at {s} is unhealthy ({seen.detail}); the rollout "
                    f"stopped before {rollout.describe_wave(wave)}",
                    None,
                )
        for s in sorted(earlier[w]):
            seen = health.get((model, s))
            if (model, s) in pending or seen is None:
                return RolloutGate(
                    model,
                    wave,
                    False,
                    False,
                    w,
                    f"waits for {name}: {model} at {s} is not rolled out yet",
                    None,
                )
            assert seen.since is not None
            ready = seen.since + rollout.healthy_for
            if latest is None or ready > latest:
                latest = ready
    if latest is not None and latest > at:
        return RolloutGate(
            model,
            wave,
            False,
            False,
            None,
            f"waits until the earlier waves have been healthy for "
            f"{_duration(rollout)} ({_iso(latest)})",
            latest,
        )
    return RolloutGate(model, wave, True, False, None, "", None)


def waves_of_desired(
    fleet: Fleet, rollout: Rollout, desired: Iterable[Pair]
) -> dict[str, list[tuple[int, str]]]:
    """model -> [(wave, site)] of its desired deployments: the gate's index, built once."""
    wave_of = {j: rollout.wave_of(j) for j in fleet.jurisdictions}
    out: dict[str, list[tuple[int, str]]] = {}
    for m, s in desired:
        out.setdefault(m, []).append((wave_of[fleet.sites[s].jurisdiction], s))
    return out


def _duration(rollout: Rollout) -> str:
    return format_duration(rollout.healthy_for)


def _window_message(jurisdiction: str, state: WindowState, timezone: str) -> str:
    if state.window is None:
        what = "no allow window is open"
    else:
        what = f"{state.window.describe()} is open"
    when = (
        f"may go at {_iso(state.next_opening)}"
        if state.next_opening is not None
        else "no window opens within two years"
    )
    return f"{jurisdiction}'s change window is closed ({what}, {timezone}); {when}"


def defer(
    fleet: Fleet,
    at: datetime,
    changes: Iterable[Change],
    desired: frozenset[Pair],
    health: Mapping[Pair, Health],
) -> tuple[tuple[Change, ...], tuple[Deferred, ...]]:
    """Split ``changes`` into those carried out now and those that wait (with why and when)."""
    with gc_paused():  # a first rollout of 100,000 pairs builds as many values
        return _defer(fleet, at, tuple(changes), desired, health)


def _defer(
    fleet: Fleet,
    at: datetime,
    changes: tuple[Change, ...],
    desired: frozenset[Pair],
    health: Mapping[Pair, Health],
) -> tuple[tuple[Change, ...], tuple[Deferred, ...]]:
    rollout = fleet.settings.rollout
    if rollout is not None and not rollout.waves:
        rollout = None
    closed = {
        j.id: (state, j.changes.timezone)
        for j in fleet.jurisdictions.values()
        if j.changes is not None and not (state := window_state(j.changes, at)).open
    }
    if rollout is None and not closed:
        return changes, ()  # nothing waits: the common case, and fleets of 100,000 pairs
    pending = frozenset((c.model, c.target) for c in changes if c.kind in _PLACED)
    index = waves_of_desired(fleet, rollout, desired) if rollout is not None else {}
    wave_of = {j: rollout.wave_of(j) for j in fleet.jurisdictions} if rollout else {}
    gates: dict[tuple[str, int], RolloutGate] = {}
    said: dict[tuple[str, str, int], Deferred] = {}  # one message per (jurisdiction, model, wave)
    go: list[Change] = []
    waiting: list[Deferred] = []
    for c in changes:
        if not may_wait(fleet, c):
            go.append(c)
            continue
        owner = fleet.sites[c.target].jurisdiction
        gate: RolloutGate | None = None
        if rollout is not None:
            key = (c.model, wave_of[owner])
            gate = gates.get(key)
            if gate is None:
                gate = gates[key] = rollout_gate(
                    fleet, rollout, c.model, key[1], at, index, pending, health
                )
        window = closed.get(owner)
        known = said.get((owner, c.model, -1 if gate is None else gate.wave))
        if known is not None and (window is not None or (gate is not None and not gate.open)):
            waiting.append(Deferred(c, known.why, known.ref, known.message, known.not_before))
            continue
        if window is not None:
            state, timezone = window
            message = _window_message(owner, state, timezone)
            not_before = state.next_opening
            if gate is not None and not gate.open:
                message += f"; and {gate.message}"
                not_before = (
                    None
                    if gate.not_before is None or not_before is None
                    else max(gate.not_before, not_before)
                )
            ref = state.window.describe() if state.window is not None else "no allow window open"
            waiting.append(Deferred(c, WaitReason.WINDOW, ref, message, not_before))
            said[(owner, c.model, -1 if gate is None else gate.wave)] = waiting[-1]
        elif gate is not None and not gate.open:
            assert rollout is not None
            why = WaitReason.WAVE_FAILED if gate.failed else WaitReason.WAVE
            ref = rollout.describe_wave(gate.wave)
            waiting.append(Deferred(c, why, ref, f"{ref}: {gate.message}", gate.not_before))
            said[(owner, c.model, gate.wave)] = waiting[-1]
        else:
            go.append(c)
    return tuple(go), tuple(waiting)
