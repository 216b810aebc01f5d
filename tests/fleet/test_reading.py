"""Reading refuses what it cannot read: no stat surprise may ever shrink the fleet (issue 9.1).

Each broken entry is made for real on the filesystem (symlinks, directories, FIFOs, sockets) and
the fleet must then fail to load, naming the path and what it is. The property test breaks
random entries of a valid fleet and checks that loading never returns a smaller fleet.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli.app import main
from orchestrator.errors import FleetError
from orchestrator.fleet.loader import load_fleet, read_fleet_files
from tests.fleet.builder import DIRECTIVE_FILE, FleetFactory

D = DIRECTIVE_FILE


def problems_of(root: Path) -> list[str]:
    with pytest.raises(FleetError) as caught:
        load_fleet(root)
    return [p.render() for p in caught.value.problems]


def only_problem(root: Path, rel: str) -> str:
    rendered = problems_of(root)
    assert len(rendered) == 1, rendered
    assert rendered[0].startswith(f"{root}/{rel}:"), rendered
    return rendered[0]


def test_directives_as_a_dangling_symlink_is_refused(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    shutil.rmtree(root / "directives")
    (root / "directives").symlink_to(root / "gone")
    assert "dangling symlink" in only_problem(root, "directives")


def test_directives_as_a_plain_file_is_refused(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    shutil.rmtree(root / "directives")
    (root / "directives").write_text("id: x\n")
    message = only_problem(root, "directives")
    assert "a regular file, not a directory" in message


def test_profile_as_a_dangling_symlink_is_refused(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    (root / "eu.yaml").unlink()
    (root / "eu.yaml").symlink_to("profiles/eu.yaml")
    assert "dangling symlink (to profiles/eu.yaml" in only_problem(root, "eu.yaml")


def test_a_directory_named_like_a_profile_is_refused(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    (root / "ca.yaml").mkdir()
    assert "a directory, not a file" in only_problem(root, "ca.yaml")


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_blocking(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    os.mkfifo(root / "ca.yaml")
    os.mkfifo(root / "directives" / "late.yaml")
    rendered = problems_of(root)
    assert [r.split(":")[0] for r in rendered] == [
        f"{root}/ca.yaml",
        f"{root}/directives/late.yaml",
    ]
    assert all("a FIFO (named pipe), not a file" in r for r in rendered)


def test_a_socket_is_refused(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    # AF_UNIX paths are short: bind in a short temporary directory, then link it in.
    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.path.join(short, "s"))
            os.link(os.path.join(short, "s"), root / "directives" / "x.yaml.sig")
            assert "a socket, not a file" in only_problem(root, "directives/x.yaml.sig")
        finally:
            sock.close()


# CI runs as root, where this always runs; a developer's unprivileged run cannot make the node.
@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root")
def test_a_device_is_refused(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    os.mknod(root / "null.yaml", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert "a character device, not a file" in only_problem(root, "null.yaml")


def test_a_symlink_to_a_device_outside_is_refused_unopened(
    signed_fleet_factory: FleetFactory,
) -> None:
    root = signed_fleet_factory()
    (root / "zero.yaml").symlink_to("/dev/zero")  # reading it would never end
    assert "symlink leaving the fleet directory" in only_problem(root, "zero.yaml")


def test_a_symlink_leaving_the_fleet_is_refused(
    signed_fleet_factory: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = signed_fleet_factory()
    outside = tmp_path_factory.mktemp("outside") / "eu.yaml"
    outside.write_bytes((root / "eu.yaml").read_bytes())
    (root / "eu.yaml").unlink()
    (root / "eu.yaml").symlink_to(outside)
    assert "symlink leaving the fleet directory" in only_problem(root, "eu.yaml")


def test_directives_linked_from_outside_are_refused(
    signed_fleet_factory: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = signed_fleet_factory()
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "directives"
    shutil.move(root / "directives", elsewhere)
    (root / "directives").symlink_to(elsewhere)
    assert "symlink leaving the fleet directory" in only_problem(root, "directives")


def test_a_symlink_loop_is_refused(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    (root / "a.yaml").symlink_to("b.yaml")
    (root / "b.yaml").symlink_to("a.yaml")
    rendered = problems_of(root)
    assert len(rendered) == 2
    assert all("symlink loop" in r for r in rendered)


def test_symlinks_inside_the_fleet_are_read(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    (root / "profiles").mkdir()
    (root / "eu.yaml").rename(root / "profiles" / "eu.yaml")
    (root / "eu.yaml").symlink_to("profiles/eu.yaml")
    assert "EU" in load_fleet(root).jurisdictions


def test_a_signature_that_is_a_directory_is_refused(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    sig = root / (D + ".sig")
    sig.unlink()
    sig.mkdir()
    assert "a directory, not a file" in only_problem(root, D + ".sig")


def test_validate_exits_1_naming_a_broken_directives_folder(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    shutil.rmtree(root / "directives")
    (root / "directives").symlink_to("nowhere")
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--fleet", str(root)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"{root}/directives: is a dangling symlink (to nowhere" in err
    assert "Traceback" not in err


def test_hidden_entries_and_other_names_are_not_looked_at(
    signed_fleet_factory: FleetFactory,
) -> None:
    root = signed_fleet_factory()
    (root / ".cache.yaml").symlink_to("nowhere")
    os.mkfifo(root / "notes.txt")
    (root / "directives" / ".swap.yaml").mkdir()
    assert set(read_fleet_files(root)) == {
        "eu.yaml",
        "us.yaml",
        "models.yaml",
        "fleet.yaml",
        D,
        D + ".sig",
    }


# ------------------------------------------------------------------ random broken entries


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "does-not-exist")


def _directory(path: Path) -> None:
    path.mkdir()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _outside(path: Path) -> None:
    path.symlink_to("/etc/passwd")


def _loop(path: Path) -> None:
    path.symlink_to(path.name)


BREAKAGES: dict[str, Callable[[Path], None]] = {
    "dangling": _dangling,
    "directory": _directory,
    "fifo": _fifo,
    "outside": _outside,
    "loop": _loop,
}


@contextmanager
def fresh_fleet(factory_root: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleet"
        shutil.copytree(factory_root, root, symlinks=True)
        yield root


@pytest.fixture(scope="module")
def valid_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return FleetFactory(tmp_path_factory.mktemp("valid"))()


ENTRIES = ["eu.yaml", "us.yaml", "models.yaml", "fleet.yaml", D, D + ".sig", "directives"]
EXTRA = ["ca.yaml", "directives/new.yaml", "directives/new.yaml.sig", "x.yml"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    broken=st.dictionaries(
        st.sampled_from(ENTRIES + EXTRA), st.sampled_from(sorted(BREAKAGES)), min_size=1
    ).filter(lambda b: b.get("directives") != "directory")
)
def test_a_broken_entry_never_shrinks_the_fleet(valid_fleet: Path, broken: dict[str, str]) -> None:
    """Whatever entries are broken, loading refuses and names each one that is reachable (an
    entry inside a broken ``directives`` cannot be reached, the folder itself is named)."""
    with fresh_fleet(valid_fleet) as root:
        for rel, how in sorted(broken.items(), key=lambda kv: kv[0] == "directives"):
            path = root / rel
            if rel == "directives":
                shutil.rmtree(path)  # broken last (see the sort), after the files inside it
            elif path.exists() or path.is_symlink():
                path.unlink()
            BREAKAGES[how](path)
        named = set(broken)
        if "directives" in named:
            named = {r for r in named if not r.startswith("directives/")}
        with pytest.raises(FleetError) as caught:
            load_fleet(root)
        files = {p.file for p in caught.value.problems}
        for rel in named:
            assert f"{root}/{rel}" in files, (rel, broken, files)
