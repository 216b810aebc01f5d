"""CLI: ``sovereign key create|list|revoke``, API keys of attested tenants (docs/identity.md).

A key stands for a tenant of the fleet (``tenants/NAME.yaml``, signed by an attestor): the
gateway judges a request carrying it as that tenant's attested principal. ``create`` prints the
key once; the state keeps only its SHA-256. Creating and revoking are audited (``key.created``,
``key.revoked``), never with the key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from orchestrator.cli import output
from orchestrator.cli.confirm import confirm
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt, StateOpt, YesOpt
from orchestrator.cli.output import emit_json
from orchestrator.errors import RefusedError, StateError, UsageError
from orchestrator.fleet.instants import format_utc

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

key_app = typer.Typer(
    name="key",
    help="API keys of attested tenants: create (shown once), list, revoke.",
    no_args_is_help=True,
)

_ATTEMPTS = 3  # another create or revoke landing meanwhile: read again and retry


def _iso(t: datetime | None) -> str | None:
    return None if t is None else format_utc(t)


def _parse_expires(value: str | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--expires {value!r} is not an ISO 8601 instant",
            hint="e.g. --expires 2027-01-01T00:00:00Z",
        ) from None
    if parsed.tzinfo is None:
        raise UsageError(
            f"--expires {value!r} has no time zone",
            hint="e.g. --expires 2027-01-01T00:00:00Z (UTC)",
        )
    if parsed <= now:
        raise UsageError(f"--expires {value} is not in the future")
    return parsed.astimezone(UTC)


@key_app.command("create")
def create(
    tenant: Annotated[
        str, typer.Option("--tenant", metavar="T", help="The tenant id (tenants/T.yaml).")
    ],
    expires: Annotated[
        str | None,
        typer.Option("--expires", metavar="ISO", help="When the key stops working (UTC)."),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", metavar="TEXT", help="What the key is for (listed).")
    ] = "",
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    yes: YesOpt = False,
) -> None:
    """Make an API key for an attested tenant; the key is printed once, only here.

    The tenant must be in the fleet with a valid, unexpired attestation. The key goes to
    stdout alone (capture it: KEY=$(sovereign key create ...)), its id and expiry to stderr;
    the state keeps only its SHA-256. Hand the key to the tenant over a secure channel; OpenAI
    clients take it as api_key. With --json: {"id", "key", "tenant", "expires"}.

    Examples:

      sovereign key create --tenant acme --name "acme backend" --expires 2027-01-01T00:00:00Z

      sovereign key create --tenant acme --yes --json
    """
    from orchestrator.fleet.loader import load_fleet
    from orchestrator.state import open_store
    from orchestrator.state.apikeys import ApiKey, key_digest, new_key
    from orchestrator.state.lease import who

    now = datetime.now(UTC)
    until = _parse_expires(expires, now)
    if len(name) > 200 or any(not c.isprintable() for c in name):
        raise UsageError("--name must be printable text of at most 200 characters")
    loaded = load_fleet(fleet)
    found = loaded.tenants.get(tenant)
    if found is None:
        problems = [p for p in loaded.tenant_problems if f"/{tenant}." in p.file]
        known = ", ".join(sorted(loaded.tenants)) or "none"
        raise RefusedError(
            f"tenant {tenant!r} is not an attested tenant of {fleet}"
            + (f": {problems[0].render()}" if problems else f" (tenants: {known})"),
            hint="add tenants/NAME.yaml signed by an attestor (docs/identity.md); "
            "`sovereign validate` shows what is wrong",
        )
    if found.expired(now):
        raise RefusedError(
            f"the attestation of tenant {tenant!r} expired {_iso(found.expires)}",
            hint=f"ask {found.attested_by} to sign a renewed tenants/{tenant}.yaml first",
        )
    judged = (
        f"residency {found.residency}, nationalities "
        f"{', '.join(sorted(found.nationalities)) or 'none'}"
    )
    output.err().print(
        f"A new API key for tenant {tenant}: judged as {judged} (attested by "
        f"{found.attested_by} until {_iso(found.expires)}).",
        markup=False,
        soft_wrap=True,
    )
    confirm(f"Create an API key for tenant {tenant}?", yes=yes, doing="create an API key")
    if until is not None and until > found.expires:
        output.err().print(
            f"note: the key would outlive the attestation; it stops working when the "
            f"attestation expires ({_iso(found.expires)}) unless the tenant is re-attested.",
            markup=False,
            soft_wrap=True,
        )
    store = open_store(state, fleet, create=False)
    try:
        key_id, key = new_key()
        record = ApiKey(
            id=key_id,
            sha256=key_digest(key).hex(),
            tenant=tenant,
            name=name,
            created_by=who(),
            created_at=now,
            expires=until,
        )
        payload = {
            "id": key_id,
            "tenant": tenant,
            "name": name,
            "by": record.created_by,
            "expires": _iso(until),
            "attestation": found.sha256,
        }
        for attempt in range(_ATTEMPTS):
            current = store.api_keys()
            try:
                store.replace_api_keys(
                    (*current.entries, record),
                    expected_version=current.version,
                    audit_kind="key.created",
                    audit_payload=payload,
                )
                break
            except StateError:
                if attempt == _ATTEMPTS - 1 or store.api_keys().version == current.version:
                    raise
    finally:
        store.close()
    if json_out:
        emit_json({"id": key_id, "key": key, "tenant": tenant, "expires": _iso(until)})
        return
    typer.echo(key)
    output.err().print(
        f"created {key_id} for tenant {tenant}"
        + (f", expires {_iso(until)}" if until else "")
        + f" (attestation expires {_iso(found.expires)}). This is the only time the key is "
        "shown: the state keeps its hash.",
        markup=False,
        soft_wrap=True,
    )


def _row(record: Any, now: datetime) -> dict[str, Any]:
    data: dict[str, Any] = record.to_json()
    data.pop("sha256")  # not secret, but nobody needs it
    data["status"] = record.status(now)
    return data


@key_app.command("list")
def list_keys(
    tenant: Annotated[
        str | None, typer.Option("--tenant", metavar="T", help="Only this tenant's keys.")
    ] = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List API keys: id, tenant, name, status, who created them, expiry. Never the key.

    Examples:

      sovereign key list

      sovereign key list --tenant acme --json
    """
    from orchestrator.state import open_store

    store = open_store(state, fleet, create=False)
    try:
        keys = store.api_keys()
    finally:
        store.close()
    now = datetime.now(UTC)
    rows = [_row(k, now) for k in keys.entries if tenant is None or k.tenant == tenant]
    if json_out:
        emit_json({"keys": rows})
        return
    if not rows:
        output.say_plain("no API keys" + (f" for tenant {tenant}" if tenant else ""))
        return
    output.print_table(
        output.out(),
        ("id", "tenant", "name", "status", "created", "expires"),
        [
            (
                r["id"],
                r["tenant"],
                r["name"] or "-",
                r["status"],
                r["created_at"],
                r["expires"] or "-",
            )
            for r in rows
        ],
    )


@key_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key id (from key list).")],
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    yes: YesOpt = False,
) -> None:
    """Revoke an API key: the gateway refuses it (401) within its reload interval. Audited.

    Examples:

      sovereign key revoke key_0123456789abcdef

      sovereign key revoke key_0123456789abcdef --yes --json
    """
    from orchestrator.state import open_store
    from orchestrator.state.apikeys import ApiKey
    from orchestrator.state.lease import who

    store = open_store(state, fleet, create=False)
    record: ApiKey | None = None
    try:
        for attempt in range(_ATTEMPTS):
            current = store.api_keys()
            record = current.get(key_id)
            if record is None:
                raise UsageError(
                    f"no API key {key_id!r} in {store.url}",
                    hint="`sovereign key list` shows the ids",
                )
            if record.revoked_at is not None:
                break  # already revoked: nothing to do, said below
            if attempt == 0:
                output.err().print(
                    f"Revoking {key_id} of tenant {record.tenant}: its holder gets 401 "
                    "within the gateway's reload interval.",
                    markup=False,
                    soft_wrap=True,
                )
                confirm(f"Revoke {key_id}?", yes=yes, doing="revoke an API key")
            now = datetime.now(UTC)
            by = who()
            record = record.revoked(by, now)
            entries = tuple(record if k.id == key_id else k for k in current.entries)
            try:
                store.replace_api_keys(
                    entries,
                    expected_version=current.version,
                    audit_kind="key.revoked",
                    audit_payload={"id": key_id, "tenant": record.tenant, "by": by},
                )
                break
            except StateError:
                if attempt == _ATTEMPTS - 1 or store.api_keys().version == current.version:
                    raise
    finally:
        store.close()
    assert record is not None
    if json_out:
        emit_json({"revoked": _row(record, datetime.now(UTC))})
        return
    output.say_plain(
        f"{key_id} of tenant {record.tenant} is revoked (since {_iso(record.revoked_at)})"
    )


cli.add_typer(key_app)
