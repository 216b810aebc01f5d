"""docs/cli.md's conventions for every command, including the ones added after this test was
written.

The command tree is read from the app itself, so a new command is covered the day it is
registered: it must answer ``--help``, take ``--json``, and under ``--json`` a failing run prints
exactly one JSON document on stdout carrying ``{"error": {"message", "hint", "exit_code"}}``
with the process's own exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import __version__
from orchestrator.cli import index as command_index
from orchestrator.cli.app import command_tree, main
from tests.cli.support import run_cli

REPO = Path(__file__).resolve().parents[2]


def _leaves(group: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    commands = getattr(group, "commands", None)
    if commands is None:
        yield path, group
        return
    for name, sub in sorted(commands.items()):
        yield from _leaves(sub, (*path, name))


COMMANDS = dict(_leaves(command_tree()))
IDS = [" ".join(p) for p in COMMANDS]


def test_the_index_is_what_the_modules_define() -> None:
    # `--help` lists commands from cli/commands.json without importing their modules: it must
    # say exactly what the modules define, with the help line their own --help starts with.
    built = command_index.build_index()
    assert command_index.render(built) == command_index.INDEX_FILE.read_text(encoding="utf-8"), (
        "orchestrator/cli/commands.json is stale: run `make cli-index`"
    )
    tree = command_tree()
    assert set(tree.commands) == {*built, "version"}
    for name, entry in built.items():
        command = tree.commands[name]
        own = " ".join((command.short_help or command.help or "").split())
        assert own.startswith(entry["help"].rstrip(".")), name


def test_the_tree_is_read_from_the_app() -> None:
    # A guard against an empty parametrization: the commands docs/cli.md lists are all here.
    names = {" ".join(p) for p in COMMANDS}
    assert {"validate", "explain", "impact", "plan", "apply", "status", "version"} <= names
    assert {"audit verify", "directive sign", "directive verify", "gateway", "demo"} <= names


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_every_command_answers_help(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, *path, "--help")
    assert code == 0
    assert "Usage:" in out and "--json" in out


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_every_command_takes_json(path: tuple[str, ...]) -> None:
    params = getattr(COMMANDS[path], "params", [])
    opts = {o for p in params for o in getattr(p, "opts", [])}
    assert "--json" in opts


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_a_failure_under_json_is_one_error_document_on_stdout(
    path: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fleet that does not exist, and whatever else the command finds missing: it must fail,
    # and say so in JSON on stdout.
    code, out, _ = run_cli(capsys, *path, "--fleet", str(tmp_path / "no-such-fleet"), "--json")
    if path == ("version",):
        assert code == 1  # version takes no --fleet: a usage error
    assert code != 0
    document = json.loads(out)  # exactly one document: json.loads refuses trailing data
    error = document["error"]
    assert set(error) >= {"message", "hint", "exit_code"}
    assert error["exit_code"] == code
    assert error["message"]


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_an_unknown_option_under_json_is_a_usage_error_in_json(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, *path, "--no-such-option", "--json")
    assert code == 1
    error = json.loads(out)["error"]
    assert error["exit_code"] == 1 and "--no-such-option" in error["message"]
    assert "--help" in error["hint"]
    assert err == ""  # reported once, on stdout
    code, out, err = run_cli(capsys, *path, "--no-such-option")
    assert code == 1 and out == "" and "--no-such-option" in err  # people read it on stderr


def test_version_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "version", "--json") == (
        0,
        json.dumps({"version": __version__}) + "\n",
        "",
    )
    assert run_cli(capsys, "version") == (0, __version__ + "\n", "")


def test_validate_failure_keeps_its_shape_and_adds_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "regions"
    fleet.mkdir()
    (fleet / "eu.yaml").write_text("jurisdiction: EU\nname: [\n")
    code, out, _ = run_cli(capsys, "validate", "--fleet", str(fleet), "--json")
    document = json.loads(out)
    assert code == 1 and document["valid"] is False
    assert document["error"]["problems"] == document["errors"] != []
    assert document["error"]["exit_code"] == 1


def test_status_result_is_on_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.demo.workspace import prepare_workspace

    ws = prepare_workspace(REPO / "regions", tmp_path / "ws")
    args = ["--fleet", str(ws.fleet_dir), "--sites", "local"]
    code, out, _ = run_cli(capsys, "apply", *args, "--yes")
    assert code == 0 and "Apply complete" in out
    code, out, err = run_cli(capsys, "status", *args)
    assert code == 0 and "Deployments" in out and "Deployments" not in err
    code, out, _ = run_cli(capsys, "plan", *args)
    assert code == 0 and "No changes" in out


def test_main_is_the_boundary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["explain", "--json"])  # --model and --residency missing: our own usage error
    out, _ = capsys.readouterr()
    assert done.value.code == 1
    assert json.loads(out)["error"]["type"] == "UsageError"


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_every_command_spells_its_json_parameter_the_same(path: tuple[str, ...]) -> None:
    # One name for one option (cli/options.py): `json_out: JsonOpt = False`.
    params = getattr(COMMANDS[path], "params", [])
    names = {p.name for p in params if "--json" in getattr(p, "opts", [])}
    assert names == {"json_out"}
