"""Files the CLI reads from users: ``explain --batch`` lines, saved plans, directive files.

Driven in process through the CLI's one entry point (its error boundary included), with
``--json``: every run exits with a documented code, and a failure is one JSON object on stdout,
``{"error": {"message", "hint", "exit_code", ...}}``, with that code; never a traceback. A
saved plan that was changed in any way is never carried out: nothing reaches a site.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.demo.workspace import Workspace, prepare_workspace
from orchestrator.errors import SovereignError
from orchestrator.planning.plan import Plan
from tests.cli.support import run_cli
from tests.fuzz.conftest import budget, count

REPO = Path(__file__).resolve().parents[2]
AT = "2026-06-13T00:00:00Z"
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["fable-5", "DE", "US", "ZZ", "GB", "trusted-partners", AT, "2026-13-45"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def error_of(out: str, code: int) -> dict[str, Any]:
    """The JSON error a failed ``--json`` run printed, checked against the documented shape."""
    error = json.loads(out)["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert "hint" in error and error["exit_code"] == code
    return error


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    w = prepare_workspace(REPO / "regions", tmp_path_factory.mktemp("fuzz-cli"))
    w.add_directive("us-doc-2026-06-12.yaml")
    return w


# --- explain --batch ------------------------------------------------------------------------

QUERY_KEYS = ["model", "residency", "nationalities", "groups", "at"]


VALID_QUERY = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["fable-5", "mythos-5", "mistral-large-3"]),
        "residency": st.sampled_from(["DE", "US", "GB", "JP", "IN", "FR"]),
    },
    optional={
        "nationalities": st.lists(st.sampled_from(["DE", "US", "GB", "CN"]), max_size=2),
        "groups": st.lists(st.sampled_from(["trusted-partners", "staff"]), max_size=2),
        "at": st.sampled_from([AT, "2026-01-01T00:00:00Z", "2027-06-01T12:00:00+02:00"]),
    },
)


@st.composite
def batch_lines(draw: st.DrawFn) -> bytes:
    """Mostly valid queries (so that answers are checked too), now and then a broken line."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 9))
        if kind <= 5:
            lines.append(json.dumps(draw(VALID_QUERY)).encode())
        elif kind == 6:  # a plausible query with any values
            query = {k: draw(JSON_VALUES) for k in QUERY_KEYS if draw(st.booleans())}
            lines.append(json.dumps(query).encode())
        elif kind == 7:
            lines.append(json.dumps(draw(JSON_VALUES)).encode())
        elif kind == 8:
            lines.append(draw(st.binary(max_size=40)).replace(b"\n", b""))
        else:
            lines.append(b"[" * draw(st.integers(1, 3000)))
    return b"\n".join(lines) + b"\n"


def test_explain_batch_lines(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = tmp_path / "queries.jsonl"

    @budget()
    @given(data=batch_lines())
    def check(data: bytes) -> None:
        batch.write_bytes(data)
        code, out, err = run_cli(
            capsys, "explain", "--batch", str(batch), "--fleet", str(workspace.fleet_dir), "--json"
        )
        assert "Traceback" not in err
        assert code in (0, 1), (code, out, err)
        # one output line per input line, whatever the line holds
        answers = [json.loads(line) for line in out.splitlines()]
        assert len(answers) == data.count(b"\n")
        failed = [a["error"] for a in answers if "error" in a]
        assert all(e["exit_code"] == 1 and e["message"] and e["line"] for e in failed)
        assert all(
            set(a["sites"]) and isinstance(a["route"], list) for a in answers if "sites" in a
        )
        assert code == (1 if failed else 0)
        if failed:
            count("explain --batch lines", "some lines refused (exit 1, JSON error lines)")
        else:
            count("explain --batch lines", "answered (exit 0)")

    check()


# --- saved plan files -------------------------------------------------------------------------


def deployments(w: Workspace) -> int:
    return len(list((w.fleet_dir / ".sovereign" / "sites").glob("*/deployments/*.json")))


@pytest.fixture(scope="module")
def saved_plan(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    args = ["--fleet", str(workspace.fleet_dir), "--sites", "local", "--at", AT]
    assert _run_plain(["plan", *args, "--out", str(path)]) == 0 and path.is_file()
    yield path


def _run_plain(args: list[str]) -> int:
    from orchestrator.cli.app import main

    with pytest.raises(SystemExit) as done:
        main(args)
    return int(done.value.code or 0)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths_of(v, (*prefix, i))


def get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


# Paths of the plan whose edit changes nothing the plan means (recomputed on load): an edit
# there is the unchanged plan, which must be accepted, so the target does not draw them.
_DERIVED = ("summary", "sha256")


@st.composite
def changed_plans(draw: st.DrawFn, original: bytes) -> tuple[bytes, str]:
    """The saved plan with one thing changed, and how: a value replaced or a key dropped (then,
    most often, the ``sha256`` recomputed as a forger would, so the edit reaches the
    comparison with the recomputed plan), the ``sha256`` itself edited, the file cut, or
    random bytes."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200)), "random bytes"
    if kind == 1:
        # at least the last character of the document itself: a cut of only its trailing
        # newline leaves the same plan, which is rightly applied (and then the state moved)
        cut = draw(st.integers(0, len(original.rstrip()) - 1))
        return original[:cut], "cut"
    doc = json.loads(original)
    if kind == 2:
        doc["sha256"] = draw(
            st.text("0123456789abcdef", min_size=64, max_size=64).filter(
                lambda h: h != doc["sha256"]
            )
        )
        return json.dumps(doc).encode(), "sha256 edited"
    # kinds 3-5: one value of the plan itself, most often inside its changes
    paths = [p for p in paths_of(doc) if p and p[0] not in _DERIVED]
    in_changes = [p for p in paths if p[0] == "changes" and len(p) > 2]
    path = draw(st.sampled_from(in_changes if kind >= 4 and in_changes else paths))
    parent, last = get(doc, path[:-1]), path[-1]
    if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
        del parent[last]
    else:
        parent[last] = draw(JSON_VALUES.filter(lambda v: v != parent[last]))
    if kind == 3:
        return json.dumps(doc).encode(), "value edited, sha256 kept"
    try:  # re-digest as a forger would: the digest of what the edited file now means
        doc["sha256"] = Plan.from_json(doc).sha256()
    except SovereignError:
        return json.dumps(doc).encode(), "value edited, unparseable"
    return json.dumps(doc).encode(), "value edited, sha256 recomputed"


def _refusal(message: str) -> str:
    for needle, kind in (
        ("not the plan the fleet and the state give now", "verification (recomputed plan)"),
        ("sha256", "sha256 mismatch"),
        ("stale", "stale (state or fleet moved)"),
    ):
        if needle in message:
            return kind
    return "malformed or other"


def test_saved_plan_files(
    workspace: Workspace, saved_plan: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every changed plan is refused with nothing applied, and, in the same harness (same
    command, same arguments), the unchanged plan is accepted and applied: the refusals are the
    checks' doing, not a usage error every input meets."""
    original = saved_plan.read_bytes()
    unchanged = Plan.loads(original)
    target = tmp_path / "changed.json"
    args = ["--fleet", str(workspace.fleet_dir), "--sites", "local", "--yes", "--json"]

    def apply(data: bytes) -> tuple[int, str, str]:
        target.write_bytes(data)
        return run_cli(capsys, "apply", str(target), *args)

    @budget()
    @given(edit=changed_plans(original))
    def check(edit: tuple[bytes, str]) -> None:
        data, how = edit
        if how.startswith("value edited"):
            try:
                if Plan.loads(data) == unchanged:
                    # a change of form only (false for 0, "5" for 5): the same plan, whose
                    # digest (of the plan's canonical JSON) is the reviewed one
                    count("saved plan files", f"{how}: the same plan in another form (skipped)")
                    return
            except SovereignError:
                pass
        # (an edited sha256 over an unchanged plan is never skipped: it must be refused)
        code, out, err = apply(data)
        assert "Traceback" not in err
        assert code == 1, (how, code, out[:400], err[:400])
        error = error_of(out, 1)
        assert deployments(workspace) == 0, f"a changed saved plan was carried out ({how})"
        count("saved plan files", f"{how}: refused by {_refusal(error['message'])}")

    check()
    assert deployments(workspace) == 0
    code, out, err = apply(original)  # the same harness accepts the plan as written
    assert code == 0, (out[:400], err[:400])
    assert deployments(workspace) > 0
    count("saved plan files", "unchanged plan: accepted and applied")


# --- directive verify -------------------------------------------------------------------------


def test_directive_and_signature_through_verify(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = workspace.fleet_dir / "directives" / "us-doc-2026-06-12.yaml"
    good, good_sig = source.read_bytes(), (source.parent / (source.name + ".sig")).read_bytes()
    directive = tmp_path / "probe.yaml"
    signature = tmp_path / "probe.yaml.sig"

    def damage(data: bytes) -> st.SearchStrategy[bytes]:
        return st.one_of(
            st.just(data),
            st.binary(max_size=200),
            st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=6)).map(
                lambda t: data[: t[0]] + t[1] + data[t[0] :]
            ),
            st.integers(0, len(data)).map(lambda n: data[:n]),
        )

    @budget()
    @given(body=damage(good), sig=damage(good_sig))
    def check(body: bytes, sig: bytes) -> None:
        directive.write_bytes(body)
        signature.write_bytes(sig)
        code, out, err = run_cli(
            capsys,
            "directive",
            "verify",
            str(directive),
            "--fleet",
            str(workspace.fleet_dir),
            "--json",
        )
        assert "Traceback" not in err and code in (0, 1), (code, out, err)
        payload = json.loads(out)
        if code == 0:
            assert body == good and payload["valid"] is True
            count("directive verify (file + .sig)", "verified (exit 0)")
        else:
            assert payload.get("valid") is False or error_of(out, 1)
            count("directive verify (file + .sig)", "refused (exit 1)")

    check()
