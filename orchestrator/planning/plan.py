"""Plan values: an immutable, ordered tuple of changes that serialises to JSON and back unchanged.

Like kopf's ``Diff`` and Pulumi's ``OpMap``: each ``Change`` carries its operation, address,
before/after spec and cause; the ``Plan`` adds where it was made from (state lineage and serial,
fleet digest, the instant ``at`` the law was evaluated for) so that ``apply`` can refuse a plan
whose state moved. Counts per operation and per jurisdiction are derived, never stored apart.

Over 400 lines on purpose: the plan's value types (changes, summaries, interlock, shortfall,
deferral and trust records) each sit beside their JSON, which must round-trip unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from orchestrator.errors import UsageError
from orchestrator.planning.gc_paused import gc_paused
from orchestrator.planning.trust import TrustChange
from orchestrator.providers.base import Op, Resource, ResourceChange, ResourceKind

PLAN_FORMAT = 1
Spec = tuple[tuple[str, str], ...]

# The published routing table is one ROUTE resource with this address (``desired.
# table_resource``); planning, applying and auditing recognise it by TABLE_TARGET.
TABLE_TARGET = "table"
TABLE_MODEL = "*"


class CauseKind(StrEnum):
    CONFIG = "config"
    DRIFT = "drift"
    DIRECTIVE = "directive"


def directive_cause(directive_id: str) -> str:
    return f"directive:{directive_id}"


def cause_kind(cause: str) -> CauseKind:
    return CauseKind(cause.partition(":")[0])


@dataclass(frozen=True, slots=True)
class Change:
    """One step of a plan. ``before``/``after`` are specs (None for create/delete)."""

    op: Op
    kind: ResourceKind
    target: str
    model: str
    key: str
    before: Spec | None
    after: Spec | None
    cause: str
    jurisdiction: str = ""  # owner of the target site; "" for fleet-wide resources
    reason: str = ""  # what left the fleet, for a config deletion of it (planning.departed)

    @property
    def address(self) -> str:
        return self.resource_before_or_after().address

    def resource_before_or_after(self) -> Resource:
        spec = self.after if self.after is not None else self.before
        return Resource(self.kind, self.target, self.model, self.key, spec or ())

    def to_resource_change(self) -> ResourceChange:
        def res(spec: Spec | None) -> Resource | None:
            return (
                None
                if spec is None
                else Resource(self.kind, self.target, self.model, self.key, spec)
            )

        return ResourceChange(self.op, res(self.before), res(self.after))

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op.value,
            "kind": self.kind.value,
            "target": self.target,
            "model": self.model,
            "key": self.key,
            "address": self.address,
            "jurisdiction": self.jurisdiction,
            "reason": self.reason,
            "before": None if self.before is None else dict(self.before),
            "after": None if self.after is None else dict(self.after),
            "cause": self.cause,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        def spec(value: Any) -> Spec | None:
            if value is None:
                return None
            return tuple(sorted((str(k), str(v)) for k, v in dict(value).items()))

        return cls(
            op=Op(data["op"]),
            kind=ResourceKind(data["kind"]),
            target=str(data["target"]),
            model=str(data["model"]),
            key=str(data.get("key", "")),
            before=spec(data.get("before")),
            after=spec(data.get("after")),
            cause=str(data["cause"]),
            jurisdiction=str(data.get("jurisdiction", "")),
            reason=str(data.get("reason", "")),
        )


@dataclass(frozen=True, slots=True)
class InterlockViolation:
    """Why a plan is refused (docs/planning.md), computed by ``reconcile.interlock``."""

    rule: str  # "min_sites_per_model" | "capacity"
    jurisdiction: str
    subject: str  # the model (min_sites) or the site (capacity)
    count: int  # deployments there after the plan
    required: int  # min_sites_per_model, or the site's capacity
    changes: tuple[str, ...]  # addresses of the plan's changes that break it
    message: str
    overridable: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "jurisdiction": self.jurisdiction,
            "subject": self.subject,
            "count": self.count,
            "required": self.required,
            "changes": list(self.changes),
            "message": self.message,
            "overridable": self.overridable,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InterlockViolation:
        return cls(
            rule=str(data["rule"]),
            jurisdiction=str(data["jurisdiction"]),
            subject=str(data["subject"]),
            count=int(data["count"]),
            required=int(data["required"]),
            changes=tuple(str(c) for c in data["changes"]),
            message=str(data["message"]),
            overridable=bool(data["overridable"]),
        )


class Blocker(NamedTuple):
    """What keeps a model from counting at one site (``site`` is "" for the jurisdiction)."""

    site: str
    rule: str  # export | residency | withdrawn | sites | not_deployed
    ref: str  # the origin, the jurisdiction or the directive id the rule refers to
    message: str

    def to_json(self) -> dict[str, str]:
        return {"site": self.site, "rule": self.rule, "ref": self.ref, "message": self.message}


class Shortfall(NamedTuple):
    """A jurisdiction's ``min_sites_per_model`` not met, and why: a warning, never a refusal
    on its own (docs/planning.md: the interlock guards only what a plan takes away)."""

    jurisdiction: str
    model: str
    deployed: int  # deployments of the model at the jurisdiction's sites
    required: int
    blockers: tuple[Blocker, ...]

    @property
    def message(self) -> str:
        why = "; ".join(f"{b.site}: {b.message}" if b.site else b.message for b in self.blockers)
        return (
            f"{self.model} is deployed at {self.deployed} of {self.jurisdiction}'s sites, fewer "
            f"than min_sites_per_model {self.required}" + (f" ({why})" if why else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": "min_sites_per_model",
            "jurisdiction": self.jurisdiction,
            "model": self.model,
            "count": self.deployed,
            "required": self.required,
            "blockers": [b.to_json() for b in self.blockers],
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shortfall:
        return cls(
            str(data["jurisdiction"]),
            str(data["model"]),
            int(data["count"]),
            int(data["required"]),
            tuple(
                Blocker(str(b["site"]), str(b["rule"]), str(b["ref"]), str(b["message"]))
                for b in data["blockers"]
            ),
        )


class Unobservable(NamedTuple):
    """A target (a site, or a DNS zone) whose provider could not be observed when the plan was
    made: the plan holds no change for it and cannot say what it needs (docs/planning.md: a trouble
    in one jurisdiction never holds back another, and is never hidden either)."""

    target: str
    jurisdiction: str  # "" for a fleet-wide target (a DNS zone)
    error: str

    def to_json(self) -> dict[str, str]:
        return {"site": self.target, "jurisdiction": self.jurisdiction, "error": self.error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Unobservable:
        return cls(str(data["site"]), str(data["jurisdiction"]), str(data["error"]))


class WaitReason(StrEnum):
    """Why a configuration change waits (docs/gitops.md, "Change windows and rollout waves")."""

    WINDOW = "window"  # its jurisdiction's change window is closed
    WAVE = "wave"  # an earlier rollout wave is not yet healthy for healthy_for
    WAVE_FAILED = "wave_failed"  # an earlier rollout wave failed: the rollout stopped there


class Deferred(NamedTuple):
    """A change the plan holds back: it is not carried out (unless ``apply --override-window``)
    and does not count as a change (``--detailed-exitcode``)."""

    change: Change
    why: WaitReason
    ref: str  # the window (``deny '0 18 * * 5' for 62h``) or the wave (``wave 1 (JP)``)
    message: str
    not_before: datetime | None  # when it may go; None: not known yet (waits for health)

    def to_json(self) -> dict[str, Any]:
        return {
            "change": self.change.to_json(),
            "why": self.why.value,
            "ref": self.ref,
            "message": self.message,
            "not_before": None if self.not_before is None else self.not_before.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deferred:
        when = data.get("not_before")
        return cls(
            Change.from_json(data["change"]),
            WaitReason(str(data["why"])),
            str(data["ref"]),
            str(data["message"]),
            None if when is None else _instant(when),
        )


# Within a site: artifacts arrive before the deployments that need them; deployments go before
# the artifacts they use. Fleet-wide route resources sort after every site.
_PHASE = {
    (Op.CREATE, ResourceKind.ARTIFACT): 0,
    (Op.UPDATE, ResourceKind.ARTIFACT): 0,
    (Op.CREATE, ResourceKind.DEPLOYMENT): 1,
    (Op.UPDATE, ResourceKind.DEPLOYMENT): 1,
    (Op.DELETE, ResourceKind.DEPLOYMENT): 2,
    (Op.DELETE, ResourceKind.ARTIFACT): 3,
}


def change_order(change: Change) -> tuple[int, str, int, str, str, str]:
    # Op is a StrEnum: comparing members compares their values, without the .value lookup.
    fleet_wide = 1 if change.kind is ResourceKind.ROUTE else 0
    phase = _PHASE.get((change.op, change.kind), 4)
    return (fleet_wide, change.target, phase, change.model, change.key, change.op)


def _instant(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"instant {value!r} has no time zone")
    return parsed


class OpCounts(NamedTuple):
    """How many changes of each operation."""

    create: int = 0
    update: int = 0
    delete: int = 0

    @classmethod
    def of(cls, ops: Counter[Op]) -> OpCounts:
        return cls(ops[Op.CREATE], ops[Op.UPDATE], ops[Op.DELETE])

    def to_json(self) -> dict[str, int]:
        return self._asdict()


class PlanSummary(NamedTuple):
    """A plan's counts: what ``plan`` prints under the changes and ``summary`` in its JSON."""

    total: int
    deferred: int
    by_op: OpCounts
    by_jurisdiction: dict[str, OpCounts]  # "*": changes of no jurisdiction (the routing table)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "deferred": self.deferred,
            "by_op": self.by_op.to_json(),
            "by_jurisdiction": {j: c.to_json() for j, c in self.by_jurisdiction.items()},
        }


@dataclass(frozen=True)
class Plan:
    lineage: str
    serial: int
    fleet_digest: str
    created_at: datetime
    at: datetime
    changes: tuple[Change, ...]
    interlocks: tuple[InterlockViolation, ...] = field(default=())
    sites: str | None = None  # "local" when made with --sites local: apply must match
    # shortfalls the plan does not cause or deepen (docs/planning.md): reported, never refused
    warnings: tuple[Shortfall, ...] = field(default=())
    # the jurisdictions whose sites the plan covers (--jurisdiction); None: the whole fleet
    scope: tuple[str, ...] | None = None
    engine: str | None = None  # "pulumi" when made with --engine pulumi: apply must match
    # targets that could not be observed: the plan covers every other one
    unobservable: tuple[Unobservable, ...] = field(default=())
    # configuration changes waiting for a change window or a rollout wave (planning.deferral)
    deferred: tuple[Deferred, ...] = field(default=())
    # changes of who may order: authority sets pinned, rotated or unpinned (planning.trust)
    trust: tuple[TrustChange, ...] = field(default=())
    # jurisdictions leaving the fleet that this plan decommissions (planning.decommission)
    decommission: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        with gc_paused():
            ordered = tuple(sorted(self.changes, key=change_order))
            waiting = tuple(sorted(self.deferred, key=lambda d: change_order(d.change)))
        object.__setattr__(self, "changes", ordered)
        object.__setattr__(self, "deferred", waiting)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.trust

    def jurisdictions(self) -> tuple[str, ...]:
        """The jurisdictions whose sites the plan changes."""
        return tuple(sorted({c.jurisdiction for c in self.changes if c.jurisdiction}))

    def by_target(self) -> dict[str, tuple[Change, ...]]:
        groups: dict[str, list[Change]] = {}
        for c in self.changes:
            groups.setdefault(c.target, []).append(c)
        return {t: tuple(cs) for t, cs in groups.items()}

    def summary(self) -> PlanSummary:
        by_j: dict[str, Counter[Op]] = {}
        for c in self.changes:
            by_j.setdefault(c.jurisdiction or "*", Counter())[c.op] += 1
        return PlanSummary(
            total=len(self.changes),
            deferred=len(self.deferred),
            by_op=OpCounts.of(Counter(c.op for c in self.changes)),
            by_jurisdiction={j: OpCounts.of(counts) for j, counts in sorted(by_j.items())},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "lineage": self.lineage,
            "serial": self.serial,
            "fleet_digest": self.fleet_digest,
            "created_at": self.created_at.isoformat(),
            "at": self.at.isoformat(),
            "changes": [c.to_json() for c in self.changes],
            "summary": self.summary().to_json(),
            "interlocks": [v.to_json() for v in self.interlocks],
            "sites": self.sites,
            "warnings": [w.to_json() for w in self.warnings],
            "scope": None if self.scope is None else list(self.scope),
            "engine": self.engine,
            "unobservable": [u.to_json() for u in self.unobservable],
            "deferred": [d.to_json() for d in self.deferred],
            "trust": [t.to_json() for t in self.trust],
            "decommission": list(self.decommission),
        }

    def sha256(self) -> str:
        """SHA-256 of the plan's canonical JSON (sorted keys, no whitespace, UTF-8): what a pull
        request pins, and what ``apply`` records in the audit log."""
        canonical = json.dumps(
            self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_json_with_digest(self) -> dict[str, Any]:
        """``to_json`` plus ``sha256`` (what ``plan --json`` and ``plan --out`` write)."""
        return {**self.to_json(), "sha256": self.sha256()}

    def dumps(self) -> str:
        return json.dumps(self.to_json_with_digest(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise UsageError(
                f"unsupported plan format {data.get('format')!r}",
                hint=f"this sovereign reads plan format {PLAN_FORMAT}; run `sovereign plan --out`",
            )
        try:
            return cls(
                lineage=str(data["lineage"]),
                serial=int(data["serial"]),
                fleet_digest=str(data["fleet_digest"]),
                created_at=_instant(data["created_at"]),
                at=_instant(data["at"]),
                changes=tuple(Change.from_json(c) for c in data["changes"]),
                interlocks=tuple(InterlockViolation.from_json(v) for v in data["interlocks"]),
                sites=None if data.get("sites") is None else str(data["sites"]),
                warnings=tuple(Shortfall.from_json(w) for w in data.get("warnings", [])),
                scope=(None if data.get("scope") is None else tuple(str(j) for j in data["scope"])),
                engine=None if data.get("engine") is None else str(data["engine"]),
                unobservable=tuple(Unobservable.from_json(u) for u in data.get("unobservable", [])),
                deferred=tuple(Deferred.from_json(d) for d in data.get("deferred", [])),
                trust=tuple(TrustChange.from_json(t) for t in data.get("trust", [])),
                decommission=tuple(str(j) for j in data.get("decommission", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            # OverflowError: a number such as 1e400 (infinity) where an integer belongs
            raise UsageError(
                f"the plan file is malformed: {exc}",
                hint="pass a file written by `sovereign plan --out FILE`",
            ) from exc

    @classmethod
    def loads(cls, text: str | bytes) -> Plan:
        """Parse a plan file; ``UsageError`` (never a traceback) for anything that is not one."""
        hint = "pass a file written by `sovereign plan --out FILE`"
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(
                    f"the plan file is not UTF-8 text (byte {exc.start}); it is not a plan",
                    hint=hint,
                ) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"the plan file is not JSON: {exc}", hint=hint) from None
        except RecursionError:
            raise UsageError("the plan file is nested too deeply to be a plan", hint=hint) from None
        if not isinstance(data, dict):
            raise UsageError("the plan file is not a JSON object", hint=hint)
        plan = cls.from_json(data)
        # The digest a pull request pins must be the digest of what is applied: a plan file
        # whose sha256 is missing or does not match its own content was edited by hand.
        recorded = data.get("sha256")
        if recorded != plan.sha256():
            found = "has no sha256" if recorded is None else f"sha256 {str(recorded)[:80]!r}"
            raise UsageError(
                f"the plan file {found}, but its content's is {plan.sha256()}: the file was "
                "edited after `sovereign plan` wrote it (a reviewed plan is applied as written)",
                hint=hint,
            )
        return plan
