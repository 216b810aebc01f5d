"""``plan --markdown FILE``: a plan as a pull-request comment (docs/cli.md).

GitHub-flavoured Markdown, readable in a review: the plan's SHA-256 first (what ``apply``
records), the changes per jurisdiction with their causes, the impact of each new or changed
directive (who is refused, rerouted or restored), then the interlock's refusals and warnings.
Long tables are folded into ``<details>`` so the comment stays short. Pure: values in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.fleet.instants import format_utc
from orchestrator.planning.plan import Change, Plan
from orchestrator.policy.impact import Impact
from orchestrator.providers.base import Op

_SIGN = {Op.CREATE: "+", Op.UPDATE: "~", Op.DELETE: "-"}
FOLD_AFTER = 15  # rows shown before a table folds into <details>


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _folded(summary: str, lines: list[str], rows: int) -> list[str]:
    if rows <= FOLD_AFTER:
        return [*lines, ""]
    return [f"<details><summary>{summary}</summary>", "", *lines, "", "</details>", ""]


def _changes(plan: Plan) -> list[str]:
    groups: dict[str, list[Change]] = {}
    for c in plan.changes:
        groups.setdefault(c.jurisdiction or "fleet-wide", []).append(c)
    out: list[str] = ["### Changes per jurisdiction", ""]
    if not groups:
        return [*out, "No changes: the sites and the routing table match the fleet.", ""]
    for j, changes in sorted(groups.items()):
        counts = {op: sum(1 for c in changes if c.op is op) for op in Op}
        head = (
            f"**{j}**: {counts[Op.CREATE]} to create, {counts[Op.UPDATE]} to update, "
            f"{counts[Op.DELETE]} to delete"
        )
        rows = [(f"`{_SIGN[c.op]}`", f"`{c.address}`", f"`{c.cause}`") for c in changes]
        out += [head, ""]
        out += _folded(
            f"{len(rows)} changes in {j}", _table(("", "address", "cause"), rows), len(rows)
        )
    return out


def _directives(reviews: tuple[tuple[str, Impact], ...]) -> list[str]:
    if not reviews:
        return []
    out = ["### Directives", ""]
    for status, result in reviews:
        d = result.directive
        s = result.summary()
        at = format_utc(result.at)
        # What it acts on: its models, or, for a lift (no models), what it lifts.
        if d.models:
            reach = f"models {', '.join(sorted(d.models))}"
        elif d.supersedes:
            reach = f"lifts {d.supersedes}"
        else:
            reach = "no models"
        out.append(
            f"- **{d.id}** ({status}; {d.action.value} by {d.jurisdiction}, "
            f"{reach}; compared at {at}): "
            f"{s['refused']} cells refused, {s['unavailable']} lose service (drained), "
            f"{s['rerouted']} rerouted, {s['restored']} restored"
            f", collateral {s['collateral']}"
        )
        rows = [
            (
                c.model,
                c.home or "(unlisted)",
                c.describe_principal(),
                c.effect.value,
                " > ".join(c.before) or "refused",
                " > ".join(c.after)
                or (
                    "unavailable (drained, 503)"
                    if c.effect.value == "unavailable"
                    else "refused (451)"
                ),
            )
            for c in result.changes
        ]
        if rows:
            table = _table(("model", "home", "who", "effect", "before", "after"), rows)
            out += ["", *_folded(f"{len(rows)} cells {d.id} changes", table, len(rows))]
    out.append("")
    return out


def _interlocks(plan: Plan) -> list[str]:
    if not plan.interlocks and not plan.warnings:
        return ["### Interlock", "", "No refusal, no warning.", ""]
    out = ["### Interlock", ""]
    for v in plan.interlocks:
        how = "override with `--allow-outage`" if v.overridable else "cannot be overridden"
        out.append(f"- :no_entry: **refused** ({v.jurisdiction}): {v.message} ({how})")
    for w in plan.warnings:
        out.append(f"- :warning: warning ({w.jurisdiction}): {w.message}")
    out.append("")
    return out


def _trust(plan: Plan) -> list[str]:
    """Changes of who may order: a rotation is named as such, never hidden in a route update."""
    if not plan.trust and not plan.decommission:
        return []
    out = ["### Who may order (authority sets)", ""]
    for j in plan.decommission:
        out.append(
            f"- :no_entry: **decommission** {j}: its profile left the fleet; applying needs "
            f"`--decommission {j} --reason TEXT`"
        )
    for t in plan.trust:
        mark = ":key:" if t.kind == "pin" else ":warning:"
        out.append(f"- {mark} **{t.kind}** {t.jurisdiction}: `{t.summary()}`")
    out.append("")
    return out


def _unobservable(plan: Plan) -> list[str]:
    if not plan.unobservable:
        return []
    out = ["### Not observed", ""]
    for u in plan.unobservable:
        owner = f" ({u.jurisdiction})" if u.jurisdiction else ""
        out.append(f"- :x: `{u.target}`{owner}: {u.error} (no change planned there)")
    out.append("")
    return out


def _deferred(plan: Plan) -> list[str]:
    if not plan.deferred:
        return []
    out = [
        "### Deferred",
        "",
        f"{len(plan.deferred)} change(s) wait for a change window or a rollout wave; they are "
        "not counted as changes and go when they may (the controller carries them out), or now "
        "with `sovereign apply --override-window REASON`.",
        "",
    ]
    rows = [
        (
            f"`{_SIGN[d.change.op]}`",
            f"`{d.change.address}`",
            d.why.value,
            d.message,
            "-" if d.not_before is None else format_utc(d.not_before),
        )
        for d in plan.deferred
    ]
    table = _table(("", "address", "waits for", "why", "may go at"), rows)
    return out + _folded(f"{len(rows)} deferred changes", table, len(rows))


def plan_markdown(plan: Plan, fleet_dir: Path, reviews: tuple[tuple[str, Impact], ...]) -> str:
    """The whole comment."""
    s = plan.summary().by_op
    verdict = "refused by the interlock" if plan.interlocks else "ready to apply"
    if plan.unobservable:
        verdict = f"incomplete: {len(plan.unobservable)} target(s) could not be observed"
    scope = "the whole fleet" if plan.scope is None else ", ".join(plan.scope)
    lines = [
        f"## Sovereign plan for `{fleet_dir}`: {s.create} to create, {s.update} to update, "
        f"{s.delete} to delete"
        + (f", {len(plan.deferred)} deferred" if plan.deferred else "")
        + f" ({verdict})",
        "",
        f"- plan SHA-256: `{plan.sha256()}`",
        f"- law evaluated at {format_utc(plan.at)}; state serial "
        f"{plan.serial}; fleet digest `{plan.fleet_digest[:16]}`; scope: {scope}",
        "",
        *_trust(plan),
        *_changes(plan),
        *_deferred(plan),
        *_directives(reviews),
        *_interlocks(plan),
        *_unobservable(plan),
        "<sub>Apply exactly this plan after merge: `sovereign apply plan.json` (it refuses if the "
        "state or the fleet moved).</sub>",
        "",
    ]
    return "\n".join(lines)
