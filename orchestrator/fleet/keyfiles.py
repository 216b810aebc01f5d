"""Reading a private key file, refusing one that others can read.

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

from orchestrator.errors import UsageError

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
