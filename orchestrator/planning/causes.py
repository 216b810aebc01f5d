"""Why a change is in a plan: the context the pure diff needs, and the directive events.

Everything here compares the working fleet with the fleet last applied (the exact files the
state recorded) and with what the state recorded as created. Directive files are matched by
their fleet-relative path, and the applied copy's id is read from its YAML only to name it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import yaml

from orchestrator.fleet.model import Fleet
from orchestrator.planning.diff import CauseContext, Identity
from orchestrator.planning.plan import CauseKind, Spec, directive_cause
from orchestrator.policy.epochs import in_force
from orchestrator.policy.rules import withdrawals
from orchestrator.providers.base import ResourceKind


@dataclass(frozen=True, slots=True)
class DirectiveEvent:
    """A difference between the working fleet's directives and the applied fleet's."""

    kind: str  # directive.added | directive.changed | directive.removed | directive.expired
    directive_id: str
    source: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.directive_id, "source": self.source, "sha256": self.sha256}


def _is_directive_file(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(p.parts) and p.parts[0] == "directives" and p.suffix in (".yaml", ".yml")


def _applied_directive_id(path: str, data: bytes) -> str:
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("id"), str):
        return str(doc["id"])
    return PurePosixPath(path).stem


def directive_events(
    fleet: Fleet, at: datetime, applied_files: Mapping[str, bytes] | None
) -> tuple[DirectiveEvent, ...]:
    """Directives added, changed or removed compared with the applied fleet, and those that
    were applied but are no longer in force at ``at`` (expired or superseded)."""
    applied = dict(applied_files or {})
    events: list[DirectiveEvent] = []
    active = {d.id for d in in_force(fleet, at)}
    working_sources = set()
    for d in sorted(fleet.directives.values(), key=lambda d: d.id):
        working_sources.add(d.source)
        old = applied.get(d.source)
        if old is None:
            events.append(DirectiveEvent("directive.added", d.id, d.source, d.sha256))
        elif hashlib.sha256(old).hexdigest() != d.sha256:
            events.append(DirectiveEvent("directive.changed", d.id, d.source, d.sha256))
        elif d.id not in active and d.effective <= at:
            events.append(DirectiveEvent("directive.expired", d.id, d.source, d.sha256))
    for path in sorted(applied):
        if _is_directive_file(path) and path not in working_sources:
            sha = hashlib.sha256(applied[path]).hexdigest()
            events.append(
                DirectiveEvent(
                    "directive.removed", _applied_directive_id(path, applied[path]), path, sha
                )
            )
    return tuple(events)


def table_cause(events: Iterable[DirectiveEvent]) -> str:
    """A routing-table change is caused by the first directive added, changed or removed."""
    for e in events:
        if e.kind in ("directive.added", "directive.changed", "directive.removed"):
            return directive_cause(e.directive_id)
    return CauseKind.CONFIG.value


def withdrawn_pairs(fleet: Fleet, at: datetime) -> dict[tuple[str, str], str]:
    """(model, site) -> id of the first in-force withdraw that takes the model off the site."""
    active = in_force(fleet, at)
    if not any(d.action.value == "withdraw" for d in active):
        return {}
    out: dict[tuple[str, str], str] = {}
    for s in fleet.sites:
        for m in fleet.models:
            found = withdrawals(fleet, m, s, active)
            if found:
                out[(m, s)] = found[0].id
    return out


def recorded_specs(recorded: Iterable[Mapping[str, Any]]) -> dict[Identity, Spec]:
    """Parse ``StateStore.recorded_resources()`` (resource dicts as ``reconcile.apply`` writes
    them, possibly wrapped under ``"resource"``) into identity -> spec."""
    out: dict[Identity, Spec] = {}
    for row in recorded:
        res = row.get("resource", row) if isinstance(row, Mapping) else None
        if not isinstance(res, Mapping):
            continue
        try:
            kind = ResourceKind(str(res["kind"])).value
            ident = (kind, str(res["target"]), str(res["model"]), str(res.get("key", "")))
            spec_raw = res.get("spec") or {}
            spec = tuple(sorted((str(k), str(v)) for k, v in dict(spec_raw).items()))
        except (KeyError, TypeError, ValueError):
            continue
        out[ident] = spec
    return out


def cause_context(
    fleet: Fleet,
    at: datetime,
    applied_files: Mapping[str, bytes] | None,
    recorded: Iterable[Mapping[str, Any]],
) -> CauseContext:
    return CauseContext(
        withdrawn=withdrawn_pairs(fleet, at),
        # The first publication of the table is configuration, not any one directive.
        table_cause=(
            CauseKind.CONFIG.value
            if applied_files is None
            else table_cause(directive_events(fleet, at, applied_files))
        ),
        recorded=recorded_specs(recorded),
        jurisdiction_of={s.id: s.jurisdiction for s in fleet.sites.values()},
    )
