"""Ed25519 private keys, made and read in one place: key files, and the keys in them.

Directive authorities (``sovereign keygen``, ``directive sign``) and development token issuers
(``sovereign token keygen``, ``token mint``) both hold Ed25519 keys as unencrypted PKCS#8 PEM;
``generate_ed25519`` makes one and ``load_ed25519`` reads one back, each caller naming its own
error type and the command that makes a key. ``cryptography``'s serialization is imported only
here, and only when a key is made or read (verifying a signature never needs it).

Reading a private key file refuses one that others can read.

A directive signing key makes law and a token signing key makes identities: a key file that its
group or everyone can read is a key that someone else may already hold. Like ssh with an
unprotected identity file, Sovereign refuses such a file before using it, names it and gives
the ``chmod`` that fixes it, rather than signing with a key whose secrecy it cannot vouch for.
Files that hold no private key (a public key passed by mistake) are left to the caller's own
"not a private key" error, which is the more useful message there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import SovereignError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Permission bits that let anyone but the owner read, write or run the file.
SHARED_BITS = 0o077


def read_private_key_file(path: Path, *, make_hint: str) -> bytes:
    """The bytes of ``path``; UsageError if unreadable, or a private key others may read.

    ``make_hint`` says how to make a key (shown when the file cannot be read at all).
    """
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read key {path}: {exc.strerror}", hint=make_hint) from None
    if mode & SHARED_BITS and b"PRIVATE KEY" in data:
        raise UsageError(
            f"private key {path} is accessible by others (mode {stat.filemode(mode)}, "
            f"{mode & 0o777:04o}); refusing to use it",
            hint=f"make it readable by its owner only: chmod 600 {path}",
        )
    return data


def generate_ed25519() -> tuple[Ed25519PrivateKey, bytes]:
    """A new Ed25519 key and its private half as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, pem


def load_ed25519(
    pem: bytes,
    *,
    make_hint: str,
    source: str = "the key",
    error: type[SovereignError] = UsageError,
) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``pem``; ``error`` (with ``make_hint``) if it is not one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise error(
            f"{source} is not a readable private key (unencrypted PEM): {exc}", hint=make_hint
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise error(
            f"{source} is {type(key).__name__.removeprefix('_')}, not an Ed25519 private key",
            hint=make_hint,
        )
    return key
