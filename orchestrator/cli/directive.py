"""CLI: ``sovereign directive sign`` and ``sovereign directive verify``.

An authority signs the exact bytes of a directive file; the signature goes to ``FILE.sig``
beside it (one line per authority). ``verify`` answers the question an operator asks before
opening a pull request: does this directive carry enough valid signatures from authorities of
its own jurisdiction, according to the fleet's profiles?
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt
from orchestrator.cli.output import emit_json, escape
from orchestrator.errors import FleetError, Problem, SignatureError, UsageError
from orchestrator.fleet.keyfiles import read_private_key_file
from orchestrator.fleet.loader import (
    inspect_directive_file,
    load_fleet,
    load_fleet_files,
    read_fleet_files,
)
from orchestrator.fleet.model import Fleet
from orchestrator.fleet.reading import read_regular_file
from orchestrator.fleet.schema import DirectiveDoc
from orchestrator.fleet.schema_errors import validate_doc
from orchestrator.fleet.signing import (
    public_key_of,
    sign_file_bytes,
    signature_path,
    write_signature,
)
from orchestrator.fleet.tenants import inspect_tenant_file, is_tenant_document
from orchestrator.fleet.yamlsource import parse_yaml

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

directive_app = typer.Typer(
    name="directive",
    help="Sign directives and check their signatures.",
    no_args_is_help=True,
)

SIGN_HELP = """Sign a directive file as one authority (appends or replaces its line in FILE.sig).

The signature covers the exact bytes of FILE: sign after the last edit. When the fleet \
(--fleet) declares the authority, the key must match its public key. A tenant attestation \
(tenants/NAME.yaml) is signed the same way, by an attestor of fleet.yaml.

\b
Examples:
  sovereign keygen --out us-commerce.pem --authority us-commerce
  sovereign directive sign regions/directives/us-doc-2026-07-01.yaml \\
      --key us-commerce.pem --authority us-commerce
  sovereign directive verify regions/directives/us-doc-2026-07-01.yaml
  sovereign directive sign regions/tenants/acme.yaml --key attestor.pem \\
      --authority eu-notary
"""

VERIFY_HELP = """Check a directive and its signatures against the fleet's profiles.

Lists which authorities' signatures verified and whether the jurisdiction's \
directive_threshold is met. Exit 0 when the directive is valid, 1 otherwise. Given a tenant \
attestation (a file with attested_by), checks it against fleet.yaml's attestors.

\b
Examples:
  sovereign directive verify regions/directives/us-doc-2026-06-12.yaml
  sovereign directive verify new.yaml --fleet regions --json
  sovereign directive verify regions/tenants/acme.yaml
"""


def _fleet_for(path: Path, fleet_dir: Path) -> Fleet:
    """The fleet to check ``path`` against.

    The fleet as it stands, if it is valid. If it is not (typically because ``path`` itself
    is a new, not yet fully signed directive inside it), the fleet without that file.
    """
    try:
        return load_fleet(fleet_dir)
    except FleetError as first:
        files = read_fleet_files(fleet_dir)
        try:
            rel = path.resolve().relative_to(fleet_dir.resolve()).as_posix()
        except ValueError:
            raise first from None
        if rel not in files:
            raise first from None
        rest = {k: v for k, v in files.items() if k not in (rel, rel + ".sig")}
        return load_fleet_files(rest, label=str(fleet_dir))


def sign_command(
    file: Annotated[Path, typer.Argument(help="The directive YAML file to sign.")],
    key: Annotated[Path, typer.Option("--key", help="Private key (PEM) from sovereign keygen.")],
    authority: Annotated[str, typer.Option("--authority", help="The authority id you sign as.")],
    fleet: FleetOpt = DEFAULT_FLEET,
    json_out: JsonOpt = False,
) -> None:
    try:
        data = read_regular_file(file)
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from exc
    pem = read_private_key_file(key, make_hint="make one with `sovereign keygen --out KEYFILE`")
    public = public_key_of(pem)
    if not is_tenant_document(data):
        _check_before_signing(file, data, fleet, authority)
    _check_key_matches(file, fleet, authority, public)
    write_signature(file, authority, sign_file_bytes(pem, data))
    sig = signature_path(file)
    if json_out:
        emit_json(
            {
                "file": str(file),
                "signature_file": str(sig),
                "authority": authority,
                "public_key": public,
            }
        )
        return
    output.err().print(f"signed {file} as {authority}; wrote {sig}", markup=False, soft_wrap=True)


def _check_before_signing(file: Path, data: bytes, fleet_dir: Path, authority: str) -> None:
    """Nothing is signed that could never be valid: the file must pass the directive schema
    (instants with their zone, known fields) and, against the fleet when it can be read, every
    check ``directive verify`` makes but the signature count; and ``authority`` must be
    registered in the directive's own jurisdiction's profile. Refused before ``.sig`` is
    written (exit 1), naming file, line and field."""
    sig_file = str(signature_path(file))
    fleet = None
    if fleet_dir.is_dir():
        try:
            fleet = _fleet_for(file, fleet_dir)
        except FleetError:
            fleet = None  # judged on its own below; _check_key_matches says the fleet is invalid
    if fleet is None:
        doc, problems = parse_yaml(str(file), data)
        if doc is not None and not problems:
            _, problems = validate_doc(doc, DirectiveDoc)
        if problems:
            raise _unsignable(file, problems)
        return
    report = inspect_directive_file(file, fleet, require_signature=False)
    # Lines of the .sig that no longer verify are what signing replaces or verify reports.
    problems = [p for p in report.problems if p.file != sig_file]
    if problems:
        raise _unsignable(file, problems)
    j = fleet.jurisdictions.get(report.jurisdiction or "")
    if j is not None and j.authority(authority) is None:
        registered = ", ".join(sorted(a.id for a in j.authorities)) or "none"
        profile = fleet_dir / j.source
        raise SignatureError(
            f"'{authority}' is not an authority of {j.id} ({profile}; registered: "
            f"{registered}): a signature by it would never count for this directive",
            hint=f"register the authority in {profile} (authorities: id and public_key, "
            "docs/security.md), or sign as one of those registered",
        )


def _unsignable(file: Path, problems: list[Problem] | tuple[Problem, ...]) -> FleetError:
    error = FleetError(problems)
    error.hint = f"fix {file} first, then sign it: the signature covers its exact bytes"
    return error


def _check_key_matches(file: Path, fleet_dir: Path, authority: str, public: str) -> None:
    """Refuse a key that the fleet says is not the authority's (the signature could never
    verify); when the fleet cannot be read, signing is still allowed (verify will tell)."""
    if not fleet_dir.is_dir():
        return
    try:
        fleet = _fleet_for(file, fleet_dir)
    except FleetError:
        output.err().print(
            f"note: fleet {fleet_dir} is invalid; the key was not checked against the profiles",
            markup=False,
            soft_wrap=True,
        )
        return
    attestor = fleet.settings.attestor(authority)
    if attestor is not None:
        if base64.b64encode(attestor.public_key).decode("ascii") != public:
            raise SignatureError(
                f"the key {public} is not the key of attestor '{authority}' (fleet.yaml)",
                hint="use the attestor's own key, or register this key in fleet.yaml first",
            )
        return
    for j in fleet.jurisdictions.values():
        found = j.authority(authority)
        if found is None:
            continue
        if base64.b64encode(found.public_key).decode("ascii") != public:
            raise SignatureError(
                f"the key {public} is not the key of authority '{authority}' of {j.id} "
                f"({j.source})",
                hint="use the authority's own key, or register this key in the profile first",
            )
        return
    known = sorted(a.id for j in fleet.jurisdictions.values() for a in j.authorities)
    known += sorted(a.id for a in fleet.settings.attestors)
    output.err().print(
        f"note: neither a profile nor fleet.yaml of {fleet_dir} declares '{authority}' "
        f"(declared: {', '.join(known)})",
        markup=False,
        soft_wrap=True,
    )


def verify_command(
    file: Annotated[Path, typer.Argument(help="The directive YAML file to check.")],
    fleet: FleetOpt = DEFAULT_FLEET,
    json_out: JsonOpt = False,
) -> None:
    try:
        loaded = _fleet_for(file, fleet)
    except FleetError as exc:
        # Without a valid fleet there are no trusted public keys to verify against.
        if json_out:
            emit_json(
                {
                    "file": str(file),
                    "valid": False,
                    "jurisdiction": None,
                    "signers": [],
                    "threshold": None,
                    "errors": [p.to_json() for p in exc.problems],
                }
            )
        raise
    try:
        is_tenant = is_tenant_document(read_regular_file(file))  # never waits on a FIFO
    except OSError:
        is_tenant = False
    if is_tenant:
        _verify_tenant(file, loaded, json_out)
        return
    report = inspect_directive_file(file, loaded)
    if json_out:
        emit_json(
            {
                "file": str(file),
                "valid": report.valid,
                "jurisdiction": report.jurisdiction,
                "signers": list(report.signers),
                "threshold": report.threshold,
                "errors": [p.to_json() for p in report.problems],
            }
        )
    else:
        signers = ", ".join(report.signers) or "none"
        needed = report.threshold if report.threshold is not None else "?"
        met = report.threshold is not None and len(report.signers) >= report.threshold
        output.say(
            output.out(),
            f"{escape(str(file))}: verified signatures: {signers} "
            f"({len(report.signers)} of {needed} required: "
            f"{'threshold met' if met else 'threshold NOT met'})",
        )
        for p in report.problems:
            sys.stderr.write(output.printable(p.render()) + "\n")
        output.say(output.out(), f"{escape(str(file))}: {'valid' if report.valid else 'INVALID'}")
    if not report.valid:
        shown = len(report.problems)
        raise SignatureError(
            f"{file} is not a valid directive"
            + (f" ({shown} problem{'s' if shown != 1 else ''})" if shown else ""),
            hint=_verify_hint(file, fleet, loaded, report.jurisdiction),
        )


def _verify_hint(file: Path, fleet_dir: Path, fleet: Fleet, jurisdiction: str | None) -> str:
    """What to do about an invalid directive: register the authority when a signature is by
    one its jurisdiction's profile does not list; else sign until the threshold is met."""
    j = fleet.jurisdictions.get(jurisdiction or "")
    try:
        lines = signature_path(file).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    signed_by = [line.split()[0] for line in lines if line.split()]
    if j is not None:
        strangers = sorted({a for a in signed_by if j.authority(a) is None})
        if strangers:
            return (
                f"register the authority ({', '.join(strangers)}) in {fleet_dir / j.source} "
                "(authorities: id and public_key, docs/security.md), or have a registered "
                "authority sign it"
            )
    return (
        "sign it with `sovereign directive sign FILE --key KEY --authority ID` until the "
        "jurisdiction's directive_threshold is met"
    )


def _verify_tenant(file: Path, fleet: Fleet, json_out: bool) -> None:
    """``directive verify`` on a tenant attestation: its attestor's signature, its schema."""
    report = inspect_tenant_file(file, fleet)
    if json_out:
        emit_json(
            {
                "file": str(file),
                "valid": report.valid,
                "tenant": report.tenant.id if report.tenant else None,
                "attested_by": report.attested_by,
                "signers": list(report.signers),
                "expires": report.tenant.expires.isoformat() if report.tenant else None,
                "errors": [p.to_json() for p in report.problems],
            }
        )
    else:
        for p in report.problems:
            sys.stderr.write(p.render() + "\n")
        state = "valid" if report.valid else "INVALID"
        signers = ", ".join(report.signers) or "none"
        output.say(
            output.out(),
            f"{escape(str(file))}: tenant attestation, verified signatures: {signers}: {state}",
        )
    if not report.valid:
        raise SignatureError(
            f"{file} is not a valid tenant attestation"
            + (f": {report.problems[0].message}" if report.problems else ""),
            hint="sign it with `sovereign directive sign FILE --key KEY --authority ATTESTOR_ID` "
            "(an attestor of fleet.yaml)",
        )


directive_app.command("sign", help=SIGN_HELP)(sign_command)
directive_app.command("verify", help=VERIFY_HELP)(verify_command)


cli.add_typer(directive_app, name="directive")
