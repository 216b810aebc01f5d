"""Authority sets are a trust root: the fleet may not change who speaks for a jurisdiction.

Whoever can push to the fleet repository can edit a profile's ``authorities``. If the fleet were
believed, that person could add a key of their own and sign a lift. So the state pins each
jurisdiction's authority set (its ``authorities`` and ``directive_threshold``) when it is first
applied, and every run that knows a state compares the fleet with the pins
(``check_pinned_authorities``, the one fail-closed check: plan, apply, the controller,
``validate --state`` and the gateway's reload all call it):

- a jurisdiction the state has not pinned yet is pinned by the next apply (a ``pin`` change
  the plan shows, audited as ``trust.pinned``);
- a jurisdiction whose set equals its pin needs nothing;
- a jurisdiction whose set differs is refused, naming it and what changed, unless the fleet
  holds a valid **rotation** of it: a directive ``action: rotate`` of that jurisdiction, not
  applied before, effective (within the clock-skew window), carrying exactly the new set (the
  loader checks that), and signed by at least the *pinned* threshold of distinct *pinned*
  authorities with distinct keys (the old keys vouch for the new, as in TUF's root rotation).
  Applying it re-pins the set (a ``rotate`` change, audited as ``trust.rotated``).

A jurisdiction pinned in the state but gone from the fleet is not judged here: that is a
decommission (``planning.decommission``). Only a person re-pins a set without the old keys:
``sovereign trust reset`` (docs/security.md, authority sets are a trust root).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.errors import RefusedError
from orchestrator.fleet.model import Action, Directive, Fleet, Jurisdiction
from orchestrator.fleet.signing import SIGNATURE_SUFFIX, verify_signatures
from orchestrator.policy.clock import CLOCK_SKEW

if TYPE_CHECKING:  # the state package is imported where a pin is made, not by every reader
    from orchestrator.state.base import PinnedAuthorities

__all__ = [
    "TRUST_PINNED",
    "TRUST_REFUSED",
    "TRUST_RESET",
    "TRUST_ROTATED",
    "TRUST_UNPINNED",
    "AuthoritySet",
    "TrustChange",
    "TrustProblem",
    "authority_set",
    "check_pinned_authorities",
    "fingerprint",
    "pins_after",
    "refuse_unpinned",
]

TRUST_PINNED = "trust.pinned"
TRUST_ROTATED = "trust.rotated"
TRUST_UNPINNED = "trust.unpinned"
TRUST_RESET = "trust.reset"
TRUST_REFUSED = "trust.refused"

AuthoritySet = tuple[tuple[str, str], ...]  # (authority id, base64 public key), sorted by id


def authority_set(jurisdiction: Jurisdiction) -> tuple[AuthoritySet, int]:
    """The set a profile declares, in the form the state pins."""
    keys = tuple(
        sorted(
            (a.id, base64.b64encode(a.public_key).decode("ascii")) for a in jurisdiction.authorities
        )
    )
    return keys, jurisdiction.directive_threshold


def fingerprint(public_key_b64: str) -> str:
    """A stable name for a public key, in OpenSSH's form (``ssh-keygen -l``): ``SHA256:`` and
    the unpadded base64 of the whole SHA-256 of the raw key (what `trust show` prints and what
    reviewers compare). Whole, never cut: a shortened digest is easier to collide with."""
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except ValueError:
        raw = public_key_b64.encode("utf-8")
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def _describe_set(keys: AuthoritySet, threshold: int) -> str:
    names = ", ".join(f"{a} {fingerprint(k)}" for a, k in keys) or "none"
    return f"{names}; threshold {threshold}"


def _set_json(keys: AuthoritySet | None, threshold: int | None) -> dict[str, Any] | None:
    if keys is None or threshold is None:
        return None
    return {
        "authorities": [{"id": a, "public_key": k, "fingerprint": fingerprint(k)} for a, k in keys],
        "directive_threshold": threshold,
    }


def _set_from_json(data: Any) -> tuple[AuthoritySet | None, int | None]:
    if data is None:
        return None, None
    keys = tuple(sorted((str(a["id"]), str(a["public_key"])) for a in data["authorities"]))
    return keys, int(data["directive_threshold"])


class TrustChange(NamedTuple):
    """A change of who may order for one jurisdiction, carried out with the plan."""

    jurisdiction: str
    kind: str  # "pin" (first apply) | "rotate" (a valid rotation) | "unpin" (decommission)
    before: AuthoritySet | None
    before_threshold: int | None
    after: AuthoritySet | None
    after_threshold: int | None
    cause: str  # "config" | "directive:<rotation id>" | "decommission"

    def summary(self) -> str:
        """One line: what changes in who may order."""
        if self.kind == "pin":
            assert self.after is not None and self.after_threshold is not None
            return f"pin {self.jurisdiction}: {_describe_set(self.after, self.after_threshold)}"
        if self.kind == "unpin":
            return f"unpin {self.jurisdiction} (decommissioned)"
        before = dict(self.before or ())
        after = dict(self.after or ())
        parts = [f"+ {a} {fingerprint(k)}" for a, k in sorted(after.items()) if before.get(a) != k]
        parts += [f"- {a} {fingerprint(k)}" for a, k in sorted(before.items()) if after.get(a) != k]
        if self.before_threshold != self.after_threshold:
            parts.append(f"threshold {self.before_threshold} -> {self.after_threshold}")
        return (
            f"rotate {self.jurisdiction}: "
            + ", ".join(parts or ["same keys"])
            + (f" ({self.cause})")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.jurisdiction,
            "kind": self.kind,
            "before": _set_json(self.before, self.before_threshold),
            "after": _set_json(self.after, self.after_threshold),
            "cause": self.cause,
            "summary": self.summary(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrustChange:
        before, before_t = _set_from_json(data.get("before"))
        after, after_t = _set_from_json(data.get("after"))
        return cls(
            str(data["jurisdiction"]),
            str(data["kind"]),
            before,
            before_t,
            after,
            after_t,
            str(data["cause"]),
        )


class TrustProblem(NamedTuple):
    """A jurisdiction whose authority set differs from its pin, with no valid rotation."""

    jurisdiction: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"jurisdiction": self.jurisdiction, "message": self.message}


def _what_changed(pin: PinnedAuthorities, keys: AuthoritySet, threshold: int) -> str:
    pinned, now = dict(pin.authorities), dict(keys)
    parts = []
    for a, k in sorted(now.items()):
        if a not in pinned:
            parts.append(f"authority {a} ({fingerprint(k)}) added")
        elif pinned[a] != k:
            parts.append(
                f"the public key of {a} changed ({fingerprint(pinned[a])} -> {fingerprint(k)})"
            )
    parts += [f"authority {a} removed" for a in sorted(pinned) if a not in now]
    if pin.threshold != threshold:
        parts.append(f"directive_threshold {pin.threshold} -> {threshold}")
    return "; ".join(parts)


def _rotation_signers(
    directive: Directive, files: Mapping[str, bytes], pin: PinnedAuthorities
) -> int:
    """How many distinct pinned keys signed ``directive`` (lines of other authorities, such as
    the new ones, are not counted and not held against it here; the loader judged them)."""
    data = files.get(directive.source)
    sig = files.get(directive.source + SIGNATURE_SUFFIX)
    if data is None or sig is None:
        return 0
    own: dict[str, bytes] = {}
    for authority, key in pin.authorities:
        try:
            own[authority] = base64.b64decode(key, validate=True)
        except ValueError:
            continue
    checked = verify_signatures(data, sig, own, {})
    return len({own[a] for a in checked.signers})


def _rotation(
    fleet: Fleet,
    files: Mapping[str, bytes],
    pin: PinnedAuthorities,
    applied: Iterable[str],
    now: datetime,
) -> tuple[Directive | None, list[str]]:
    """A valid rotation of the pinned jurisdiction in the fleet (or None), and why each other
    rotation of it in the fleet does not count."""
    done = set(applied)
    why_not: list[str] = []
    for d in sorted(fleet.directives.values(), key=lambda d: d.id):
        if d.action is not Action.ROTATE or d.jurisdiction != pin.jurisdiction:
            continue
        if d.id in done:
            why_not.append(f"rotation {d.id} was applied before (a rotation counts once)")
            continue
        if d.effective > now + CLOCK_SKEW:
            why_not.append(f"rotation {d.id} is not effective yet ({d.effective.isoformat()})")
            continue
        signed = _rotation_signers(d, files, pin)
        if signed >= pin.threshold:
            return d, why_not
        why_not.append(
            f"rotation {d.id} is signed by {signed} pinned key(s), {pin.threshold} needed"
        )
    return None, why_not


def check_pinned_authorities(
    fleet: Fleet,
    files: Mapping[str, bytes],
    pins: Mapping[str, PinnedAuthorities],
    applied: Iterable[str],
    now: datetime,
) -> tuple[tuple[TrustChange, ...], tuple[TrustProblem, ...]]:
    """Judge every jurisdiction's authority set against the state's pins (fail closed).

    ``files`` are the fleet's exact bytes (a rotation's signatures are verified against the
    pinned keys here); ``applied`` the ids of directives the state has applied (a rotation is
    used once); ``now`` the real clock. Returns the changes an apply carries out (pins of new
    jurisdictions, valid rotations) and the problems that refuse the fleet.
    """
    applied = tuple(applied)
    changes: list[TrustChange] = []
    problems: list[TrustProblem] = []
    for jid in sorted(fleet.jurisdictions):
        keys, threshold = authority_set(fleet.jurisdictions[jid])
        pin = pins.get(jid)
        if pin is None:
            changes.append(TrustChange(jid, "pin", None, None, keys, threshold, "config"))
            continue
        if pin.same_set(keys, threshold):
            continue
        rotation, why_not = _rotation(fleet, files, pin, applied, now)
        if rotation is not None:
            changes.append(
                TrustChange(
                    jid,
                    "rotate",
                    pin.authorities,
                    pin.threshold,
                    keys,
                    threshold,
                    f"directive:{rotation.id}",
                )
            )
            continue
        signers = ", ".join(a for a, _ in pin.authorities)
        problems.append(
            TrustProblem(
                jid,
                f"the authority set of {jid} ({fleet.jurisdictions[jid].source}) differs from "
                f"the one pinned in the state: {_what_changed(pin, keys, threshold)}; only "
                f"a rotation (action: rotate) signed by {pin.threshold} of the pinned "
                f"authorities ({signers}) changes who speaks for {jid}"
                + (f" ({'; '.join(why_not)})" if why_not else ""),
            )
        )
    return tuple(changes), tuple(problems)


def refuse_unpinned(
    fleet: Fleet,
    files: Mapping[str, bytes],
    pins: Mapping[str, PinnedAuthorities],
    applied: Iterable[str],
    now: datetime,
    audit: Any | None,
) -> tuple[TrustChange, ...]:
    """``check_pinned_authorities``, raising ``RefusedError`` (after auditing it as
    ``trust.refused``; an audit failure propagates) when any jurisdiction is refused."""
    changes, problems = check_pinned_authorities(fleet, files, pins, applied, now)
    if not problems:
        return changes
    if audit is not None:
        audit.append(
            TRUST_REFUSED,
            {"at": now.isoformat(), "jurisdictions": [p.to_json() for p in problems]},
        )
    raise RefusedError(
        "; ".join(p.message for p in problems),
        hint="restore the authorities and directive_threshold as pinned (`sovereign trust "
        "show` lists them), or add a rotation signed by the pinned authorities "
        "(docs/fleet-format.md, rotating an authority set); when every key is lost, a person "
        "re-pins with `sovereign trust reset --jurisdiction J --reason TEXT`",
    )


def pins_after(
    pins: Mapping[str, PinnedAuthorities], changes: Iterable[TrustChange], at: datetime
) -> dict[str, PinnedAuthorities]:
    """The pins once ``changes`` are carried out."""
    from orchestrator.state.base import PinnedAuthorities

    out = dict(pins)
    for c in changes:
        if c.kind == "unpin":
            out.pop(c.jurisdiction, None)
            continue
        assert c.after is not None and c.after_threshold is not None
        cause = "first apply" if c.kind == "pin" else c.cause
        out[c.jurisdiction] = PinnedAuthorities(
            c.jurisdiction, c.after, c.after_threshold, at, cause
        )
    return out
