"""CLI: ``sovereign validate`` (the fleet, signatures included) and ``sovereign keygen``.

``validate`` is what a CI pipeline runs on every change to the fleet, so its output is made for
both people and tools: one ``FILE:LINE: field.path: message`` line per problem (every problem in
one run, on stderr, never wrapped), or with ``--json``
``{"valid": bool, "errors": [{"file", "line", "field", "message"}]}`` on stdout, plus docs/json.md's
``"error"`` object when the fleet is invalid.
``keygen`` makes the Ed25519 key pair of a directive authority.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt, StateOpt
from orchestrator.cli.output import emit_json
from orchestrator.errors import FleetError, RefusedError, UsageError
from orchestrator.fleet.loader import load_fleet_files, read_fleet_files
from orchestrator.fleet.model import Fleet
from orchestrator.fleet.signing import generate_key
from orchestrator.planning.desired import desired_pairs
from orchestrator.planning.guarantees import capacity_problems, shortfalls
from orchestrator.policy.epochs import in_force

if TYPE_CHECKING:
    from orchestrator.state.base import StateStore

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

VALIDATE_HELP = """Check the fleet: every file, every reference, every directive signature.

Exit 0 with a one-line summary when the fleet is valid. Otherwise print every problem, one \
per line, as FILE:LINE: field.path: message and exit 1, e.g.

\b
  regions/eu.yaml:20: sites\\[0].region: 'eu-centrall-1' is not a region of aws

Guarantees the fleet cannot keep (a model a jurisdiction lists but that export rules, \
residency or a withdraw keep from enough of its sites: min_sites_per_model) are printed as \
warnings naming the model, the jurisdiction and the rule; they do not make the fleet invalid.

The fleet is also judged against a state (no applied directive missing while in force): \
the one --state names, else the default state when it exists; the output says which, or \
that there was none.

With --json, stdout holds \
{"valid": true|false, "errors": \\[{"file", "line", "field", "message"}, ...], \
"warnings": \\[...], "state": null|"URL"} ("warnings" and "state" only when valid); an \
invalid fleet adds {"error": {"message", "hint", "exit_code", "problems"}}.

\b
The fleet directory (default: regions/):
  <jurisdiction>.yaml       one region profile per jurisdiction
  models.yaml               the model catalog
  directives/NAME.yaml      a directive, signed in NAME.yaml.sig
  tenants/NAME.yaml         an attested tenant, signed in NAME.yaml.sig
  fleet.yaml                optional: unlisted_countries, dns, attestors

\b
A short region profile:
  jurisdiction: EU
  name: European Union
  countries: [DE, FR, NL]        # ISO 3166-1 alpha-2
  authorities:
    - id: eu-commission
      public_key: "BASE64"       # from `sovereign keygen`
  residency:
    process_in: [EU]
  models: \\[olmo-3]               # ids from models.yaml
  sites:
    - id: aws-eu-central-1
      provider: aws              # aws | gcp | local
      region: eu-central-1
      country: DE
      operator: acme-eu-gmbh
  failover: \\[aws-eu-central-1]

\b
Examples:
  sovereign validate
  sovereign validate --fleet path/to/regions --json
"""

KEYGEN_HELP = """Make an Ed25519 key pair for a directive authority.

Writes the private key (PEM, file mode 0600) to --out and prints the public key and the \
lines to paste under the profile's `authorities:`. Keep the private key off the repository.

\b
Examples:
  sovereign keygen --out ~/keys/us-commerce.pem --authority us-commerce
  sovereign directive sign regions/directives/NEW.yaml \\
      --key ~/keys/us-commerce.pem --authority us-commerce
"""


@cli.command("validate", help=VALIDATE_HELP)
def validate_command(
    fleet: FleetOpt = DEFAULT_FLEET, json_out: JsonOpt = False, state: StateOpt = None
) -> None:
    try:
        files = read_fleet_files(fleet)
        loaded = load_fleet_files(files, label=str(fleet))
        over_capacity = capacity_problems(loaded, files, label=str(fleet))
        # A tenant that does not verify is left out of the fleet (its keys are refused) but
        # is still an error here: docs/identity.md.
        if over_capacity or loaded.tenant_problems:
            raise FleetError([*over_capacity, *loaded.tenant_problems])
    except FleetError as exc:
        if json_out:
            # The documented validate shape; the boundary adds docs/json.md's "error" beside it.
            emit_json({"valid": False, "errors": [p.to_json() for p in exc.problems]})
        raise
    now = datetime.now(UTC)
    judged_against = _state_to_judge_against(fleet, state)
    if judged_against is not None:
        _check_against_state(loaded, fleet, state, now, json_out=json_out)
    # Guarantees the fleet cannot keep (docs/planning.md): warnings, the fleet is still valid.
    warnings = shortfalls(loaded, now, desired_pairs(loaded, now))
    if json_out:
        emit_json(
            {
                "valid": True,
                "errors": [],
                "warnings": [w.to_json() for w in warnings],
                "state": judged_against,
            }
        )
        return
    for w in warnings:
        output.err().print(f"warning: {w.message}", markup=False, highlight=False, soft_wrap=True)
    for t in sorted(loaded.tenants.values(), key=lambda t: t.id):
        if t.expired(now):
            output.err().print(
                f"warning: tenant {t.id} ({fleet}/{t.source}): attestation expired "
                f"{t.expires.isoformat()}; its keys are refused until {t.attested_by} signs a "
                "renewal",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    active = len(in_force(loaded, now))
    total = len(loaded.directives)
    output.say_plain(
        f"{fleet}: valid: {len(loaded.jurisdictions)} jurisdictions, "
        f"{len(loaded.sites)} sites, "
        f"{len(loaded.models)} models, {active} directive{'s' if active != 1 else ''} in force "
        f"now ({total} signed in total)"
        + (
            f", {len(loaded.tenants)} attested tenant{'s' if len(loaded.tenants) != 1 else ''}"
            if loaded.tenants
            else ""
        )
        + (
            f"; judged against the state {judged_against} (no applied directive missing)"
            if judged_against is not None
            else "; not judged against a state (none exists yet; pass --state URL to name one)"
        ),
    )


def _state_to_judge_against(fleet: Path, state: str | None) -> str | None:
    """The state validate judges the fleet against (docs/cli.md): the one named with --state
    (which must exist), else the default state when it exists, else none."""
    from orchestrator.state.url import parse_state_url

    where = parse_state_url(state, fleet)
    if state is None and (where.path is None or not where.path.exists()):
        return None
    return state if state is not None else str(where.path)


def _check_against_state(
    loaded: Fleet, fleet: Path, state: str | None, now: datetime, *, json_out: bool
) -> None:
    """Directive rollback protection (docs/planning.md): the fleet must keep every directive the
    state applied while it would still be in force (judged on the real clock; refusals audited)."""
    # Imported here: plain `validate` never pays for the state stack (start-up time).
    from orchestrator.reconcile.rollback import ledger_of, refuse_rollback, rollback_problems
    from orchestrator.state import open_store

    store = open_store(state, fleet, create=False)
    try:
        try:
            refuse_rollback(loaded, ledger_of(store), now, store.audit)
        except RefusedError:
            if json_out:
                found = rollback_problems(loaded, ledger_of(store), now)
                emit_json(
                    {
                        "valid": False,
                        "errors": [
                            {"file": str(fleet), "line": None, "field": "directives", **p.to_json()}
                            for p in found
                        ],
                        "state": state if state is not None else store.url,
                    }
                )
            raise
        _check_pins(loaded, fleet, store, now, json_out=json_out)
    finally:
        store.close()


def _check_pins(
    loaded: Fleet, fleet: Path, store: StateStore, now: datetime, *, json_out: bool
) -> None:
    """Authority sets are a trust root: the fleet's sets must be the pinned ones, or carry a
    valid rotation (planning.trust; refusals audited)."""
    from orchestrator.planning.trust import check_pinned_authorities, refuse_unpinned
    from orchestrator.reconcile.rollback import ledger_of

    files = read_fleet_files(fleet)
    pins, ledger = store.pinned_authorities(), ledger_of(store)
    try:
        refuse_unpinned(loaded, files, pins, ledger, now, store.audit)
    except RefusedError:
        if json_out:
            _, problems = check_pinned_authorities(loaded, files, pins, ledger, now)
            emit_json(
                {
                    "valid": False,
                    "errors": [
                        {
                            "file": str(fleet / loaded.jurisdictions[p.jurisdiction].source),
                            "line": None,
                            "field": "authorities",
                            "id": p.jurisdiction,
                            **p.to_json(),
                        }
                        for p in problems
                    ],
                }
            )
        raise


def write_private_key(path: Path, pem: bytes, *, force: bool) -> None:
    """Write ``pem`` with mode 0600; refuse to replace an existing file unless ``force``."""
    if path.exists() and not force:
        raise UsageError(
            f"{path} already exists; refusing to overwrite a key",
            hint="pass --force to replace it (the old key's signatures stop verifying once the "
            "profile carries the new public key), or choose another --out",
        )
    if not path.parent.is_dir():
        raise UsageError(f"directory {path.parent} does not exist", hint="create it first")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL + mode 0600 at creation: the key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


@cli.command("keygen", help=KEYGEN_HELP)
def keygen_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the private key (PEM).")],
    authority: Annotated[
        str, typer.Option("--authority", help="Authority id to put in the profile snippet.")
    ] = "AUTHORITY_ID",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing key file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    pem, public = generate_key()
    try:
        write_private_key(out, pem, force=force)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from exc
    if json_out:
        emit_json({"key_file": str(out), "authority": authority, "public_key": public})
        return
    output.err().print(
        f"wrote private key {out} (mode 0600); keep it secret, never commit it",
        markup=False,
        soft_wrap=True,
    )
    typer.echo(f"public key: {public}")
    typer.echo("add to the region profile under `authorities:`")
    typer.echo(f'  - id: {authority}\n    public_key: "{public}"')
