"""The evidence as one self-contained HTML page (inline style, no script, no network).

What an auditor reads first comes first: the verdict (violations, unparsed lines, gaps: each
listed in full), then the directives of the period and what each changed, then the counts.
"""

from __future__ import annotations

from html import escape
from typing import Any

from orchestrator import __version__
from orchestrator.evidence.report import Evidence, iso

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1b1b}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#f3f3f3}
.ok{color:#05632a;font-weight:bold}.bad{color:#a50e0e;font-weight:bold}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
.num{text-align:right}
"""


def _table(headers: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{cls}">' + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}-table"><tr>{head}</tr>{body}</table>'


def _code(value: Any) -> str:
    return f"<code>{escape(str(value))}</code>"


def _principal(p: dict[str, Any] | None) -> str:
    if p is None:
        return "(none)"
    nats = ",".join(p["nationalities"]) or "unknown"
    groups = ",".join(p["groups"]) or "none"
    return escape(f"residency {p['residency']}, nationalities {nats}, groups {groups}")


def render_html(ev: Evidence) -> str:
    doc = ev.to_json()
    verdict_ok = ev.clean
    title = f"Evidence: {ev.jurisdiction}, {iso(ev.start)} to {iso(ev.end)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>",
        f'<body data-violations="{len(ev.violations)}" data-unparsed="{len(ev.unparsed)}" '
        f'data-gaps="{len(ev.gaps)}" data-judged="{ev.judged}">',
        f"<h1>{escape(title)}</h1>",
        f"<p>Made by sovereign {escape(__version__)}. Audit chain verified: "
        f"{ev.audit.entries} entries, head {_code(ev.audit.head or '-')}. "
        f"Decision logs read: {', '.join(_code(f) for f in ev.files) or '(none)'}; "
        f"{ev.lines} lines, {ev.judged} decisions in the period re-judged against the fleet "
        f"in force at their instant, {ev.outside_period} outside the period (numbered only).</p>",
        '<p id="verdict" class="{}">{}</p>'.format(
            "ok" if verdict_ok else "bad",
            "No violation, no unparsed line, no gap."
            if verdict_ok
            else f"{len(ev.violations)} violations, {len(ev.unparsed)} unparsed lines, "
            f"{len(ev.gaps)} gaps: each is listed below.",
        ),
        '<h2 id="violations">Violations</h2>',
    ]
    if doc["violations"]:
        parts.append(
            _table(
                ["decision", "instant", "kind", "model", "principal", "site", "law's route", "why"],
                [
                    [
                        _code(v["decision_id"]) + f"<br>{escape(v['file'])}:{v['line']}",
                        escape(v["timestamp"]),
                        escape(v["kind"]),
                        escape(str(v["model"])),
                        _principal(v["principal"]),
                        escape(str(v["site"])),
                        escape(", ".join(v["law_route"] or []) or "(refused)")
                        if v["law_route"] is not None
                        else "-",
                        escape(v["message"])
                        + "".join(
                            f"<br>{escape(r.get('rule', ''))}: {escape(r.get('message', ''))}"
                            for r in v["reasons"]
                        ),
                    ]
                    for v in doc["violations"]
                ],
                "violation",
            )
        )
    else:
        parts.append("<p>None.</p>")
    parts.append('<h2 id="unparsed">Unparsed lines</h2>')
    if doc["unparsed"]:
        parts.append(
            _table(
                ["file", "line", "what is wrong"],
                [[escape(u["file"]), str(u["line"]), escape(u["error"])] for u in doc["unparsed"]],
                "unparsed",
            )
        )
    else:
        parts.append("<p>None.</p>")
    parts.append('<h2 id="gaps">Gaps in decision ids</h2>')
    if doc["gaps"]:
        parts.append(
            _table(
                ["gateway", "missing from", "to", "lines missing"],
                [
                    [_code(g["gateway"]), str(g["from_seq"]), str(g["to_seq"]), str(g["missing"])]
                    for g in doc["gaps"]
                ],
                "gap",
            )
        )
    else:
        parts.append("<p>None.</p>")
    parts.append(f'<h2 id="directives">Directives of {escape(ev.jurisdiction)} in force</h2>')
    if doc["directives"]:
        rows = []
        for d in doc["directives"]:
            changed = d["changed"]
            recorded = "<br>".join(
                f"#{a['seq']} {escape(a['kind'])} {escape(a['ts'])}" for a in d["audit"]
            )
            rows.append(
                [
                    _code(d["id"]) + f"<br>{escape(d['reference'])}",
                    escape(d["action"]) + " " + escape(", ".join(d["models"])),
                    escape(f"{d['in_force']['from']} to {d['in_force']['to']}"),
                    recorded or "-",
                    escape(
                        f"{changed['changed']} of {changed['cells']} audience cells: "
                        f"{changed['refused']} refused, {changed['rerouted']} rerouted, "
                        f"{changed['restored']} restored; collateral {changed['collateral']}"
                    ),
                ]
            )
        parts.append(
            _table(
                ["directive", "action", "in force in the period", "audit log", "what it changed"],
                rows,
                "directive",
            )
        )
    else:
        parts.append("<p>None in force in the period.</p>")
    served = doc["decisions"]["served"]
    parts.append(
        f'<h2 id="served">Served at sites {escape(ev.jurisdiction)} governs '
        f"({served['total']})</h2>"
    )
    parts.append(
        _table(
            ["model", "site", "audience class", "requests"],
            [
                [escape(r["model"]), escape(r["site"]), escape(r["audience"]), str(r["count"])]
                for r in served["by"]
            ],
            "served",
        )
    )
    refused = doc["decisions"]["refused"]
    parts.append(f'<h2 id="refused">Refused (451) ({refused["total"]})</h2>')
    parts.append(
        _table(
            ["model", "audience class", "requests"],
            [[escape(r["model"]), escape(r["audience"]), str(r["count"])] for r in refused["by"]],
            "refused",
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
