"""CLI: ``sovereign trust show`` and ``sovereign trust reset --jurisdiction J --reason TEXT``.

The state pins each jurisdiction's authority set at its first apply (docs/security.md,
authority sets are a trust root). ``show`` lists the pins with key fingerprints, so a reviewer
compares them with the keys the authorities hold. ``reset`` is the break-glass for a
jurisdiction whose every key is lost: a person re-pins the set its profile now lists, on a
terminal (or with ``--yes``), audited as ``trust.reset`` with the reason. The controller never
does it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli import output
from orchestrator.cli.confirm import confirm
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt, StateOpt, YesOpt
from orchestrator.cli.output import emit_json
from orchestrator.errors import UsageError
from orchestrator.state.base import PinnedAuthorities

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

trust_app = typer.Typer(
    name="trust",
    help="Pinned authority sets: who may sign each jurisdiction's directives.",
    no_args_is_help=True,
)


def pin_json(pin: PinnedAuthorities) -> dict[str, Any]:
    from orchestrator.planning.trust import fingerprint

    return {
        "jurisdiction": pin.jurisdiction,
        "authorities": [
            {"id": a, "public_key": k, "fingerprint": fingerprint(k)} for a, k in pin.authorities
        ],
        "directive_threshold": pin.threshold,
        "pinned_at": pin.pinned_at.isoformat(),
        "cause": pin.cause,
    }


@trust_app.command("show")
def show(
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the authority sets the state has pinned, with key fingerprints.

    A fingerprint is OpenSSH's form: SHA256: and the base64 of the SHA-256 of the raw public
    key; compare it with the key the authority holds. Each set is also compared with the fleet's
    (same, differs, or absent from the fleet). Never creates a state.

    Examples:

      sovereign trust show

      sovereign trust show --state s3://acme-sovereign/prod --json
    """
    from orchestrator.state import open_store

    store = open_store(state, fleet, create=False)
    try:
        pins = store.pinned_authorities()
    finally:
        store.close()
    compared = _compare_with_fleet(fleet, pins)
    if json_out:
        emit_json({"pins": [{**pin_json(pins[j]), "fleet": compared.get(j)} for j in sorted(pins)]})
        return
    con = output.out()
    if not pins:
        con.print("No authority set is pinned yet: the next apply pins every jurisdiction's.")
        return
    for j in sorted(pins):
        doc = pin_json(pins[j])
        said = {"same": "", "differs": "; the fleet's set DIFFERS", "absent": "; not in the fleet"}
        con.print(
            f"[bold]{j}[/]: threshold {doc['directive_threshold']}, pinned "
            f"{doc['pinned_at']} ({doc['cause']}){said.get(compared.get(j) or '', '')}",
            highlight=False,
        )
        for a in doc["authorities"]:
            con.print(f"  {a['id']:<24} {a['fingerprint']}", highlight=False)


def _compare_with_fleet(fleet: Path, pins: dict[str, PinnedAuthorities]) -> dict[str, str]:
    """Per pinned jurisdiction: the fleet's set is the ``same``, ``differs`` or is ``absent``
    (empty when the fleet does not load: show never fails for the fleet's sake)."""
    from orchestrator.errors import SovereignError
    from orchestrator.fleet.loader import load_fleet_files, read_fleet_files
    from orchestrator.planning.trust import authority_set

    try:
        loaded = load_fleet_files(read_fleet_files(fleet), label=str(fleet))
    except SovereignError:
        return {}
    out: dict[str, str] = {}
    for j, pin in pins.items():
        if j not in loaded.jurisdictions:
            out[j] = "absent"
            continue
        keys, threshold = authority_set(loaded.jurisdictions[j])
        out[j] = "same" if pin.same_set(keys, threshold) else "differs"
    return out


@trust_app.command("reset")
def reset(
    jurisdiction: Annotated[
        str,
        typer.Option("--jurisdiction", metavar="J", help="The jurisdiction to re-pin."),
    ],
    reason: Annotated[
        str, typer.Option("--reason", help="Why the keys cannot rotate it (audited).")
    ],
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    yes: YesOpt = False,
) -> None:
    """Re-pin J's authority set to the one its profile lists now (audited: trust.reset).

    The break-glass for a jurisdiction whose every key is lost, when no rotation can be
    signed. Whoever runs it decides who speaks for J from now on: it asks on a terminal
    (or takes --yes) and records the reason, the old and the new set in the audit log.
    The controller never does this.

    Examples:

      sovereign trust reset --jurisdiction US --reason "INC-7: HSM lost, keys re-issued by BIS"
    """
    from orchestrator.fleet.loader import load_fleet_files, read_fleet_files
    from orchestrator.planning.trust import TRUST_RESET, authority_set
    from orchestrator.state import open_store

    if not reason.strip():
        raise UsageError("--reason must say why", hint="e.g. --reason 'INC-7: keys lost'")
    loaded = load_fleet_files(read_fleet_files(fleet), label=str(fleet))
    if jurisdiction not in loaded.jurisdictions:
        raise UsageError(
            f"{jurisdiction} is not a jurisdiction of the fleet "
            f"({', '.join(sorted(loaded.jurisdictions))})",
            hint="reset re-pins the set a profile of the fleet lists",
        )
    keys, threshold = authority_set(loaded.jurisdictions[jurisdiction])
    store = open_store(state, fleet, create=False)
    try:
        pins = store.pinned_authorities()
        old = pins.get(jurisdiction)
        new = PinnedAuthorities(
            jurisdiction, keys, threshold, datetime.now(UTC), f"trust reset: {reason}"
        )
        names = ", ".join(a for a, _ in keys)
        output.say(
            output.err(),
            f"trust reset re-pins {jurisdiction} to {names} (threshold {threshold}); "
            f"pinned now: {', '.join(a for a, _ in old.authorities) if old else 'nothing'}",
        )
        confirm(
            f"Re-pin {jurisdiction}? Whoever holds these keys speaks for it from now on.",
            yes=yes,
            doing="re-pin an authority set",
        )
        payload = {
            "jurisdiction": jurisdiction,
            "reason": reason,
            "before": None if old is None else pin_json(old),
            "after": pin_json(new),
        }
        with store.lock("trust reset") as lease:
            store.replace_pins(
                lease, {**pins, jurisdiction: new}, audit_kind=TRUST_RESET, audit_payload=payload
            )
    finally:
        store.close()
    if json_out:
        emit_json({"reset": pin_json(new), "before": payload["before"], "reason": reason})
    else:
        output.out().print(
            f"Re-pinned {jurisdiction}: {len(keys)} authorit{'y' if len(keys) == 1 else 'ies'}, "
            f"threshold {threshold} (audited as trust.reset).",
            highlight=False,
        )


cli.add_typer(trust_app)
