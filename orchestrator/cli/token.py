"""CLI: ``sovereign token keygen`` and ``sovereign token mint``, development tokens.

The gateway serves only principals named by a signed token. In production the identity
provider signs them and the gateway is given its *public* key. For a first trial, a test or a
demo, these two commands stand in for the IdP: ``keygen`` makes an Ed25519 key pair (the public
half is what ``sovereign gateway --token-key`` takes), ``mint`` signs a token for one principal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_AUDIENCE, DEFAULT_FLEET, FleetOpt, JsonOpt
from orchestrator.cli.output import emit_json, escape
from orchestrator.cli.validate import write_private_key
from orchestrator.errors import UsageError
from orchestrator.fleet.countries import parse_country
from orchestrator.fleet.keyfiles import read_private_key_file

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

DEV_ONLY = (
    "Development and tests only: production tokens come from your identity provider, and "
    "the gateway is given the IdP's public key."
)

token_app = typer.Typer(
    name="token",
    help="Development tokens for the gateway: a key pair, and tokens signed with it.\n\n"
    + DEV_ONLY,
    no_args_is_help=True,
)

KEYGEN_HELP = f"""Make an Ed25519 key pair that stands in for an identity provider.

Writes the private key to --out (PEM, mode 0600) and the public key beside it \
(OUT with .pem replaced by .pub.pem): give the PUBLIC file to `sovereign gateway --token-key`, \
keep the private one for `sovereign token mint --key`. {DEV_ONLY}

\b
Examples:
  sovereign token keygen --out dev-idp.pem   # and dev-idp.pub.pem
  sovereign gateway --token-key dev-idp.pub.pem --stub-upstreams
"""

MINT_HELP = f"""Sign a token for one principal with a key from `sovereign token keygen`.

Prints the token (a JWT) on stdout, for `Authorization: Bearer TOKEN`. It carries the claims \
the gateway reads: residency, nationalities (none = unknown), groups, and exp/nbf/aud/iss/sub. \
{DEV_ONLY}

\b
Examples:
  sovereign token mint --key dev-idp.pem --residency DE --nationality DE
  TOKEN=$(sovereign token mint --key dev-idp.pem --residency US \\
      --nationality DE --group trusted-partners --ttl 1h)
"""


def public_key_path(private: Path) -> Path:
    """Where keygen puts the public half: ``dev-idp.pem`` -> ``dev-idp.pub.pem``."""
    stem = private.name[:-4] if private.name.endswith(".pem") else private.name
    return private.with_name(f"{stem}.pub.pem")


def keygen_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the PRIVATE key (PEM).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
    fleet: FleetOpt = DEFAULT_FLEET,
    json_out: JsonOpt = False,
) -> None:
    del fleet  # every command takes --fleet (docs/cli.md); a key pair does not depend on it
    from orchestrator.gateway.devtokens import generate_dev_key

    public = public_key_path(out)
    if public.exists() and not force:
        raise UsageError(
            f"{public} already exists; refusing to overwrite a key",
            hint="pass --force to replace both files, or choose another --out",
        )
    pair = generate_dev_key()
    try:
        write_private_key(out, pair.private_pem, force=force)
        public.write_bytes(pair.public_pem)
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename}: {exc.strerror}") from exc
    if json_out:
        emit_json({"private_key": str(out), "public_key": str(public), "development_only": True})
        return
    console = output.out()
    output.say(console, f"private key: {escape(str(out))} (mode 0600; for `sovereign token mint`)")
    output.say(console, f"public key:  {escape(str(public))} (for `sovereign gateway --token-key`)")
    output.say(output.err(), f"[yellow]note:[/] {DEV_ONLY}")


def mint_command(
    key: Annotated[Path, typer.Option("--key", help="Private key from `sovereign token keygen`.")],
    residency: Annotated[
        str, typer.Option("--residency", "-r", help="Country the principal is located in.")
    ],
    nationality: Annotated[
        list[str] | None,
        typer.Option("--nationality", "-n", help="A nationality (repeatable; none = unknown)."),
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="A group (repeatable).")
    ] = None,
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime: 90s, 15m, 1h, 2d.")] = "1h",
    audience: Annotated[
        str, typer.Option("--audience", help="The 'aud' claim (the gateway's --token-audience).")
    ] = DEFAULT_AUDIENCE,
    issuer: Annotated[
        str, typer.Option("--issuer", help="The 'iss' claim (the gateway's --token-issuer).")
    ] = "sovereign-dev",
    subject: Annotated[
        str | None, typer.Option("--subject", help="The 'sub' claim (default: a random id).")
    ] = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    json_out: JsonOpt = False,
) -> None:
    del fleet  # every command takes --fleet (docs/cli.md); a token does not depend on it
    from orchestrator.gateway.devtokens import mint_token, parse_ttl
    from orchestrator.gateway.tokens import GROUP_EXPECTED, is_group_name

    home = parse_country(residency, "residency")
    nats = [parse_country(n, "nationality") for n in nationality or []]
    groups = [g.strip() for g in group or []]
    for g in groups:
        if not is_group_name(g):
            # the gateway would refuse the whole token (401): refuse to mint it
            raise UsageError(f"invalid --group {g!r}", hint=GROUP_EXPECTED)
    ttl_s = parse_ttl(ttl)
    pem = read_private_key_file(
        key, make_hint="make one with `sovereign token keygen --out dev-idp.pem`"
    )
    token = mint_token(
        pem,
        residency=home,
        nationalities=nats,
        groups=groups,
        ttl_s=ttl_s,
        audience=audience,
        issuer=issuer,
        subject=subject,
        source=str(key),
    )
    expires = datetime.fromtimestamp(_now() + ttl_s, UTC).isoformat(timespec="seconds")
    if json_out:
        emit_json({"token": token, "expires": expires, "development_only": True})
        return
    typer.echo(token)  # one line, never wrapped: it is copied into a header
    output.err().print(
        f"development token for a principal in {home}, expires {expires}", markup=False
    )


def _now() -> float:
    import time

    return time.time()


token_app.command("keygen", help=KEYGEN_HELP)(keygen_command)
token_app.command("mint", help=MINT_HELP)(mint_command)


cli.add_typer(token_app, name="token")
