"""CLI: ``sovereign report --html FILE``, a picture of who is served where.

One self-contained HTML file (inline style and script, no network, no CDN) that a compliance
reviewer or a pull-request reader opens instead of reading tables: for each model, jurisdictions
x audience classes, each cell served here / served elsewhere / refused, refusals linking the
directive or rule behind them; the sites and who runs them; and with ``--directive FILE`` the
before/after of adding that directive. The cells come from ``policy.coverage``, which asks the
same ``Explainer`` as ``sovereign explain``.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import __version__
from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt, StateOpt
from orchestrator.cli.output import emit_json
from orchestrator.errors import UsageError
from orchestrator.fleet.instants import format_utc, parse_at_or_now
from orchestrator.fleet.model import Directive, Fleet
from orchestrator.policy.coverage import CellState, Coverage, CoverageCell, coverage

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

RULES = {
    "no_jurisdiction": "R0: the principal's residency belongs to no jurisdiction of the fleet "
    "(and unlisted_countries is deny).",
    "not_offered": "R1: the jurisdiction owning the site does not list the model in its models.",
    "export": "R2: the model's export control does not allow placing it in the site owner's "
    "jurisdiction.",
    "residency": "R3: the principal's home jurisdiction does not allow processing at the site "
    "owner's jurisdiction (residency.process_in).",
    "withdrawn": "R4: a withdraw directive in force, from a jurisdiction governing the site.",
    "directive": "R5: a suspend directive in force, from a jurisdiction governing the site, "
    "whose audience matches the principal.",
}
_STATE_TEXT = {
    CellState.HERE: "served here",
    CellState.ELSEWHERE: "served elsewhere",
    CellState.REFUSED: "refused",
    CellState.UNAVAILABLE: "unavailable (drained)",
}

REPORT_HELP = """Write a self-contained HTML picture of who is served where.

For each model: jurisdictions x audience classes, each cell served here (at a site of the \
person's own jurisdiction), served elsewhere, refused, or unavailable (the law allows sites \
that operations drained, read from the state like explain), with links to the directive or rule \
behind each refusal; the sites and their operators. With --directive FILE, the before/after of \
adding that directive (cells that change are marked). The file has no external references: \
open it in any browser, attach it to a pull request.

\b
Examples:
  sovereign report --html who-is-served.html
  sovereign report --html june-13.html --at 2026-06-13
  sovereign report --html impact.html --directive drafts/new-directive.yaml
"""


@cli.command("report", help=REPORT_HELP)
def report_command(
    html: Annotated[Path, typer.Option("--html", help="Write the HTML report to this file.")],
    at: Annotated[
        str | None, typer.Option("--at", help="Instant to judge at (ISO 8601; default now).")
    ] = None,
    directive_file: Annotated[
        Path | None,
        typer.Option("--directive", help="Also show the before/after of adding this directive."),
    ] = None,
    fleet_dir: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    from orchestrator.fleet.loader import load_directive_file, load_fleet
    from orchestrator.fleet.signing import signature_path
    from orchestrator.state.url import read_drains

    fleet = load_fleet(fleet_dir)
    when = parse_at_or_now(at, what="--at")
    drained = read_drains(state, fleet_dir).sites_at(when)
    before: Coverage | None = None
    directive: Directive | None = None
    if directive_file is not None:
        signed = signature_path(directive_file).is_file()
        directive = load_directive_file(directive_file, fleet, require_signature=signed)
        base = fleet.with_directives(
            {k: v for k, v in fleet.directives.items() if k != directive.id}
        )
        before = coverage(base, when, play=[directive], drained=drained)
        fleet = base.with_directives({**base.directives, directive.id: directive})
        after = coverage(fleet, when, drained=drained)
    else:
        after = coverage(fleet, when, drained=drained)
    page = render_html(fleet, fleet_dir, after, before, directive)
    try:
        html.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot write {html}: {exc.strerror}", hint="choose a writable --html path"
        ) from None
    cells = sum(len(r.cells) for rows in after.models.values() for r in rows)
    changed = _changed_count(after, before)
    if json_out:
        emit_json(
            {
                "file": str(html),
                "at": when.isoformat(),
                "models": len(after.models),
                "cells": cells,
                "changed": changed,
            }
        )
        return
    output.say(
        output.out(),
        f"wrote {escape(str(html))}: {len(after.models)} models, {cells} cells at "
        f"{when.isoformat()}" + (f", {changed} changed by {directive.id}" if directive else ""),
    )


def _changed_count(after: Coverage, before: Coverage | None) -> int:
    if before is None:
        return 0
    n = 0
    for model, rows in after.models.items():
        old = _by_key(before, model)
        for row in rows:
            for a, cell in zip(after.audiences, row.cells, strict=True):
                prior = old.get((row.countries[0], a.label))
                n += prior is not None and prior.state != cell.state
    return n


def _by_key(cov: Coverage, model: str) -> dict[tuple[str, str], CoverageCell]:
    out: dict[tuple[str, str], CoverageCell] = {}
    for row in cov.models.get(model, ()):
        for a, cell in zip(cov.audiences, row.cells, strict=True):
            for country in row.countries:
                out[(country, a.label)] = cell
    return out


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24}
h1{margin:0 0 .2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
.meta{color:#57606a}table{border-collapse:collapse;margin:.6rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;vertical-align:top;text-align:left}
th{background:#f6f8fa}td.here{background:#dafbe1}td.elsewhere{background:#fff8c5}
td.refused{background:#ffebe9}td.unavailable{background:#ddf4ff}
td.changed{outline:3px solid #8250df;outline-offset:-3px}
.cell small{display:block;color:#57606a}.legend span{padding:.1rem .5rem;margin-right:.5rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
"""

_SCRIPT = """
(function(){
  var cells = document.querySelectorAll('td.cell');
  var counts = {here:0, elsewhere:0, refused:0, unavailable:0};
  cells.forEach(function(td){ counts[td.dataset.state] += 1; });
  document.getElementById('counts').textContent =
    cells.length + ' cells: ' + counts.here + ' served here, ' + counts.elsewhere +
    ' served elsewhere, ' + counts.refused + ' refused' +
    (counts.unavailable ? ', ' + counts.unavailable + ' unavailable (drained)' : '');
  document.body.dataset.ready = 'yes';
})();
"""


def render_html(
    fleet: Fleet,
    fleet_dir: Path,
    after: Coverage,
    before: Coverage | None,
    directive: Directive | None,
) -> str:
    """The whole page as one string; every value from the fleet is HTML-escaped."""
    at = format_utc(after.at)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Who is served where: {escape(str(fleet_dir))} at {escape(at)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Who is served where</h1>",
        f'<p class="meta">Fleet <code>{escape(str(fleet_dir))}</code> judged at '
        f"<code>{escape(at)}</code> by sovereign {escape(__version__)}. "
        '<span id="counts"></span></p>',
    ]
    if directive is not None:
        parts.append(
            f'<p>Before/after adding directive <a href="#directive-{escape(directive.id)}">'
            f"<code>{escape(directive.id)}</code></a>: cells it changes are outlined and read "
            "<em>before &rarr; after</em>.</p>"
        )
    parts.append(
        '<p class="legend"><span class="here" style="background:#dafbe1">served here</span>'
        '<span style="background:#fff8c5">served elsewhere</span>'
        '<span style="background:#ffebe9">refused</span>'
        '<span style="background:#ddf4ff">unavailable (drained)</span> '
        "Unavailable: the law allows sites, operations drained them all (an outage, not the "
        "law). Served here: the first site of the route belongs to the person's own jurisdiction. "
        "Each cell is one class of principals (residency x nationality x group).</p>"
    )
    parts.append(
        "<nav><strong>Models:</strong> "
        + " ".join(
            f'<a href="#model-{escape(m)}"><code>{escape(m)}</code></a>' for m in after.models
        )
        + ' &middot; <a href="#sites">sites</a> &middot; <a href="#directives">directives</a>'
        ' &middot; <a href="#rules">rules</a></nav>'
    )
    for model, rows in after.models.items():
        parts.extend(_model_section(fleet, model, rows, after, before))
    parts.extend(_sites_section(fleet))
    parts.extend(_directives_section(fleet, after.at))
    parts.append('<h2 id="rules">Rules</h2><table><tr><th>code</th><th>rule</th></tr>')
    for code, text in RULES.items():
        parts.append(
            f'<tr id="rule-{code}"><td><code>{code}</code></td><td>{escape(text)}</td></tr>'
        )
    parts.append("</table>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def _model_section(
    fleet: Fleet,
    model: str,
    rows: tuple[object, ...],
    after: Coverage,
    before: Coverage | None,
) -> list[str]:
    m = fleet.models[model]
    out = [
        f'<section id="model-{escape(model)}"><h2><code>{escape(model)}</code></h2>',
        f'<p class="meta">origin {escape(m.origin)}, export control '
        f"{escape(str(m.export_control))}</p>",
        "<table><tr><th>jurisdiction</th><th>residency</th>"
        + "".join(f"<th>{escape(a.label)}</th>" for a in after.audiences)
        + "</tr>",
    ]
    old = _by_key(before, model) if before is not None else {}
    for row in after.models[model]:
        home = row.jurisdiction or "(no jurisdiction)"
        out.append(f"<tr><th>{escape(home)}</th><td>{escape(', '.join(row.countries))}</td>")
        for a, cell in zip(after.audiences, row.cells, strict=True):
            prior = old.get((row.countries[0], a.label)) if before is not None else None
            out.append(_cell_html(fleet, model, row.countries[0], cell, prior))
        out.append("</tr>")
    out.append("</table></section>")
    del rows
    return out


def _cell_html(
    fleet: Fleet, model: str, country: str, cell: CoverageCell, prior: CoverageCell | None
) -> str:
    p = cell.example
    changed = prior is not None and prior.state != cell.state
    classes = f"cell {cell.state.value}" + (" changed" if changed else "")
    attrs = (
        f'class="{classes}" data-state="{cell.state.value}" data-model="{escape(model)}" '
        f'data-residency="{escape(country)}" '
        f"data-nationalities='{escape(json.dumps(sorted(p.nationalities)))}' "
        f"data-groups='{escape(json.dumps(sorted(p.groups)))}'"
    )
    if prior is not None:
        attrs += f' data-before="{prior.state.value}"'
    if cell.state is CellState.REFUSED:
        # explain's refused_by for this principal, by the same function (policy.explain)
        refused_by = {"directives": list(cell.directives), "rules": [r.value for r in cell.rules]}
        attrs += f" data-refused-by='{escape(json.dumps(refused_by))}'"
    text = _STATE_TEXT[cell.state]
    if changed and prior is not None:
        text = f"{_STATE_TEXT[prior.state]} &rarr; {text}"
    if cell.state is CellState.REFUSED:
        links = [
            f'<a href="#directive-{escape(d)}"><code>{escape(d)}</code></a>'
            for d in cell.directives
        ] or [f'<a href="#rule-{r.value}"><code>{r.value}</code></a>' for r in cell.rules]
        detail = " ".join(links)
    elif cell.state is CellState.UNAVAILABLE:
        detail = "drained: " + " ".join(
            f'<a href="#site-{escape(d)}"><code>{escape(d)}</code></a>' for d in cell.drained
        )
    else:
        first = cell.route[0]
        detail = f"<code>{escape(first)}</code> ({escape(fleet.sites[first].jurisdiction)})"
    title = " > ".join(cell.route) if cell.route else "route empty"
    return f'<td {attrs} title="{escape(title)}">{text}<small>{detail}</small></td>'


def _sites_section(fleet: Fleet) -> list[str]:
    out = [
        '<h2 id="sites">Sites</h2><table><tr><th>site</th><th>owner</th><th>operator</th>'
        "<th>provider</th><th>region</th><th>country</th><th>governed by</th></tr>"
    ]
    for site_id in sorted(fleet.sites):
        s = fleet.sites[site_id]
        out.append(
            f'<tr id="site-{escape(site_id)}"><td><code>{escape(site_id)}</code></td>'
            f"<td>{escape(s.jurisdiction)}</td><td>{escape(s.operator)}</td>"
            f"<td>{escape(str(s.provider))}</td><td>{escape(s.region)}</td>"
            f"<td>{escape(s.country)}</td><td>{escape(', '.join(sorted(s.governing)))}</td></tr>"
        )
    out.append("</table>")
    return out


def _directives_section(fleet: Fleet, at: datetime) -> list[str]:
    from orchestrator.policy.epochs import in_force

    active = {d.id for d in in_force(fleet, at)}
    out = [
        '<h2 id="directives">Directives</h2><table><tr><th>id</th><th>by</th><th>action</th>'
        "<th>models</th><th>effective</th><th>expires</th><th>in force</th><th>reference</th></tr>"
    ]
    for d_id in sorted(fleet.directives):
        d = fleet.directives[d_id]
        out.append(
            f'<tr id="directive-{escape(d.id)}"><td><code>{escape(d.id)}</code></td>'
            f"<td>{escape(d.jurisdiction)}</td><td>{escape(d.action.value)}</td>"
            f"<td>{escape(', '.join(sorted(d.models)))}</td>"
            f"<td>{escape(d.effective.isoformat())}</td>"
            f"<td>{escape(d.expires.isoformat() if d.expires else '-')}</td>"
            f"<td>{'yes' if d.id in active else 'no'}</td>"
            f"<td>{escape(d.reference or '')}</td></tr>"
        )
    out.append("</table>")
    return out
