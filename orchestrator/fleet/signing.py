"""Ed25519 signatures of directives: key generation, signing, and the ``.sig`` file format.

A directive binds sites the moment it is in the fleet, so who wrote it matters as much as what
it says. Each directive ``NAME.yaml`` has a detached ``NAME.yaml.sig`` beside it: one line per
signature, ``AUTHORITY_ID BASE64_SIGNATURE``, each an Ed25519 signature over the *exact* bytes of
the directive file (no canonicalisation: a changed byte, even whitespace, voids every
signature). :func:`verify_signatures` reports every line that is wrong, with its line number,
and which distinct authorities verified; ``fleet.checks`` decides what that means for the fleet.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from orchestrator.errors import SignatureError
from orchestrator.fleet.keyfiles import generate_ed25519, load_ed25519

SIGNATURE_SUFFIX = ".sig"


def generate_key() -> tuple[bytes, str]:
    """A new Ed25519 key: (private key as unencrypted PKCS8 PEM, public key as base64 raw-32)."""
    key, pem = generate_ed25519()
    return pem, public_key_b64(key.public_key())


def public_key_b64(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_private_key(private_pem: bytes) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from PEM; SignatureError (with a hint) if it is not one."""
    return load_ed25519(
        private_pem,
        make_hint="use a key written by `sovereign keygen --out KEYFILE` (unencrypted PEM)",
        error=SignatureError,
    )


def public_key_of(private_pem: bytes) -> str:
    """Base64 raw public key of a PEM private key."""
    return public_key_b64(load_private_key(private_pem).public_key())


def sign_file_bytes(private_pem: bytes, data: bytes) -> str:
    """Base64 Ed25519 signature of ``data`` (the exact bytes of a directive file)."""
    return base64.b64encode(load_private_key(private_pem).sign(data)).decode("ascii")


def signature_path(directive_path: Path) -> Path:
    return directive_path.with_name(directive_path.name + SIGNATURE_SUFFIX)


def write_signature(path: Path, authority: str, signature_b64: str) -> None:
    """Append ``authority``'s line to the .sig beside directive ``path``, replacing an older one.

    Other authorities' lines are kept untouched and in order. Written atomically (temp file +
    rename) so a crash never leaves a half-written signature file.
    """
    if not authority or any(c.isspace() for c in authority):
        raise SignatureError(f"'{authority}' is not an authority id (no spaces allowed)")
    sig_path = signature_path(path)
    kept: list[str] = []
    if sig_path.exists():
        for line in sig_path.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if fields and fields[0] == authority:
                continue
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    kept.append(f"{authority} {signature_b64}")
    tmp = sig_path.with_name(sig_path.name + ".tmp")
    tmp.write_text("\n".join(kept) + "\n", encoding="utf-8")
    os.replace(tmp, sig_path)


@dataclass(frozen=True, slots=True)
class SignatureLineProblem:
    line: int
    message: str


@dataclass(frozen=True)
class SignatureCheck:
    """Outcome of checking one .sig against the authorities of the directive's jurisdiction."""

    signers: tuple[str, ...]  # distinct authorities whose signature verified, in file order
    problems: tuple[SignatureLineProblem, ...] = field(default=())

    def meets(self, threshold: int) -> bool:
        return not self.problems and len(self.signers) >= threshold


def verify_signatures(
    data: bytes,
    sig_bytes: bytes,
    own: Mapping[str, bytes],
    others: Mapping[str, str],
) -> SignatureCheck:
    """Check every line of a .sig file against ``data``.

    ``own`` maps the authority ids of the directive's jurisdiction to raw public keys;
    ``others`` maps authority ids of *other* jurisdictions to their jurisdiction id (so the
    message can say why such a signature does not count). Duplicate lines of one authority
    count once.
    """
    try:
        text = sig_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return SignatureCheck(
            (),
            (
                SignatureLineProblem(
                    1, "not UTF-8 text; expected lines 'AUTHORITY_ID BASE64_SIGNATURE'"
                ),
            ),
        )
    signers: list[str] = []
    problems: list[SignatureLineProblem] = []
    valid_ids = ", ".join(sorted(own)) or "none declared"
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split()
        if len(parts) != 2:
            problems.append(
                SignatureLineProblem(
                    number, "malformed line; expected 'AUTHORITY_ID BASE64_SIGNATURE'"
                )
            )
            continue
        authority, encoded = parts
        if authority not in own:
            if authority in others:
                why = (
                    f"'{authority}' is an authority of {others[authority]}, not of this "
                    f"directive's jurisdiction (valid: {valid_ids})"
                )
            else:
                why = f"unknown authority '{authority}' (valid: {valid_ids})"
            problems.append(SignatureLineProblem(number, why))
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            problems.append(
                SignatureLineProblem(number, f"signature of '{authority}' is not valid base64")
            )
            continue
        try:
            Ed25519PublicKey.from_public_bytes(own[authority]).verify(signature, data)
        except InvalidSignature:
            problems.append(
                SignatureLineProblem(
                    number,
                    f"signature of '{authority}' does not verify: the directive changed after "
                    "signing, or it was signed with another key",
                )
            )
            continue
        except ValueError as exc:
            problems.append(SignatureLineProblem(number, f"cannot verify '{authority}': {exc}"))
            continue
        if authority not in signers:
            signers.append(authority)
    return SignatureCheck(tuple(signers), tuple(problems))
