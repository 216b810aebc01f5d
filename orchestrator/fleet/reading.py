"""Read the files of a fleet directory, refusing every entry it cannot read as a file.

A fleet that silently shrinks is the most dangerous fleet there is: a dropped directive is a
lifted suspension, a dropped region profile is a jurisdiction without law. So every entry that
*should* be part of the fleet (a top-level ``*.yaml``/``*.yml``, the ``directives`` folder, and
``*.yaml``/``*.yml``/``*.sig`` inside it) must be exactly what it claims to be, or the read
fails naming the path and what it is instead:

- a dangling symlink, a symlink loop, or a symlink that resolves outside the fleet directory;
- a directory where a file belongs, or a file (or anything else) where ``directives`` belongs;
- a FIFO, socket, or device (never opened for reading: a FIFO would block the caller);
- a file the process may not read.

Files are opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so an
entry swapped for a FIFO between the listing and the read is refused too, never waited on.
Hidden entries (the default state store lives in ``.sovereign/``) and other names (a README,
a ``notes/`` folder) are not part of the fleet and are not looked at.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from orchestrator.errors import FleetError, Problem
from orchestrator.fleet.signing import SIGNATURE_SUFFIX

__all__ = [
    "CATALOG_NAMES",
    "DIRECTIVES_DIR",
    "SETTINGS_NAMES",
    "TENANTS_DIR",
    "YAML_SUFFIXES",
    "UnreadableFileError",
    "read_fleet_files",
    "read_regular_file",
]

YAML_SUFFIXES = (".yaml", ".yml")
CATALOG_NAMES = ("models.yaml", "models.yml")
SETTINGS_NAMES = ("fleet.yaml", "fleet.yml")
DIRECTIVES_DIR = "directives"
TENANTS_DIR = "tenants"  # attested tenants, signed like directives (docs/identity.md)

# Reading more than this from one fleet file is a mistake (a fleet file is a few kilobytes).
MAX_FILE_BYTES = 16 * 1024 * 1024


class _Unreadable(Exception):
    """One entry is not what the fleet needs it to be; the message says what it is."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


def _target(path: Path, real_root: str) -> os.stat_result:
    """stat of what ``path`` names, after checking that any symlink stays inside the fleet."""
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode):
        dest = os.readlink(path)
        try:
            real = os.path.realpath(path, strict=True)
        except FileNotFoundError as exc:
            raise _Unreadable(f"a dangling symlink (to {dest}, which does not exist)") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Unreadable(f"a symlink loop (-> {dest})") from exc
            raise _Unreadable(
                f"a symlink that cannot be followed (-> {dest}): {exc.strerror}"
            ) from exc
        if os.path.commonpath([real_root, real]) != real_root:
            raise _Unreadable(
                f"a symlink leaving the fleet directory (-> {real}); fleet files must live "
                "inside it, where review of the fleet repository sees them"
            )
        return os.stat(real)
    return link


def _read(path: Path, real_root: str) -> bytes:
    """The exact bytes of the regular file ``path`` names; _Unreadable for anything else."""
    st = _target(path, real_root)
    if not stat.S_ISREG(st.st_mode):
        raise _Unreadable(f"{_kind(st.st_mode)}, not a file")
    return _read_regular(path, MAX_FILE_BYTES)


def _read_regular(path: Path, max_bytes: int) -> bytes:
    """Open ``path`` without blocking, check on the descriptor that it is a regular file, and
    read at most ``max_bytes`` of it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except PermissionError as exc:
        raise _Unreadable(f"unreadable ({exc.strerror}); give this user read access") from exc
    except OSError as exc:
        raise _Unreadable(f"cannot be opened: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped between the stat and the open
            raise _Unreadable(f"{_kind(mode)}, not a file")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise _Unreadable(f"larger than {max_bytes} bytes; not a file this command reads")
        return b"".join(chunks)
    except OSError as exc:
        raise _Unreadable(f"cannot be read: {exc.strerror}") from exc
    finally:
        os.close(fd)


class UnreadableFileError(OSError):
    """``read_regular_file`` refused a path; ``str()`` says what it is instead of a file."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path} is {what}")
        self.path = path
        self.what = what
        self.strerror = what


def read_regular_file(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a single file a user names on the command line (a directive to verify, a
    saved plan), with the fleet reader's checks: a FIFO, socket, device or directory is refused
    before it is opened (a FIFO would block, ``/dev/zero`` never ends), it is opened without
    blocking and checked again on the descriptor, and at most ``max_bytes`` are read.
    ``UnreadableFileError`` (an ``OSError``) otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise UnreadableFileError(path, "not found") from exc
    except OSError as exc:
        raise UnreadableFileError(path, f"not accessible ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFileError(path, f"{_kind(st.st_mode)}, not a file")
    try:
        return _read_regular(path, max_bytes)
    except _Unreadable as exc:
        raise UnreadableFileError(path, str(exc)) from exc


def _is_dir(path: Path, real_root: str) -> bool:
    st = _target(path, real_root)
    if not stat.S_ISDIR(st.st_mode):
        raise _Unreadable(
            f"{_kind(st.st_mode)}, not a directory; {DIRECTIVES_DIR}/ and {TENANTS_DIR}/ must "
            "be folders of signed files (or absent when there are none)"
        )
    return True


def _listing(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except OSError as exc:
        raise _Unreadable(f"a directory that cannot be listed: {exc.strerror}") from exc


def read_fleet_files(root: Path) -> dict[str, bytes]:
    """Every file the fleet consists of: fleet-relative posix path -> exact bytes.

    Raises FleetError naming every entry that should be part of the fleet but cannot be read
    as what it should be (see the module docstring); the fleet never silently shrinks.
    """
    if not root.is_dir():
        raise FleetError(
            [
                Problem(
                    str(root),
                    None,
                    "",
                    "fleet directory not found; pass --fleet DIR (a directory with region "
                    "profiles, models.yaml and directives/)",
                )
            ]
        )
    real_root = os.path.realpath(root)
    files: dict[str, bytes] = {}
    problems: list[Problem] = []

    def take(path: Path, rel: str) -> None:
        try:
            files[rel] = _read(path, real_root)
        except _Unreadable as exc:
            problems.append(Problem(f"{root}/{rel}", None, "", f"is {exc}"))

    try:
        top = _listing(root)
    except _Unreadable as exc:
        raise FleetError([Problem(str(root), None, "", f"is {exc}")]) from exc
    for path in top:
        if path.name.startswith("."):
            continue
        if path.name in (DIRECTIVES_DIR, TENANTS_DIR):
            continue
        if path.suffix in YAML_SUFFIXES:
            take(path, path.name)
    for folder in (DIRECTIVES_DIR, TENANTS_DIR):
        directory = root / folder
        if not os.path.lexists(directory):
            continue
        try:
            _is_dir(directory, real_root)
            inner = _listing(directory)
        except _Unreadable as exc:
            problems.append(Problem(f"{root}/{folder}", None, "", f"is {exc}"))
            inner = []
        for path in inner:
            if path.name.startswith("."):
                continue
            if path.suffix in (*YAML_SUFFIXES, SIGNATURE_SUFFIX):
                take(path, f"{folder}/{path.name}")
    if problems:
        raise FleetError(problems)
    return files
