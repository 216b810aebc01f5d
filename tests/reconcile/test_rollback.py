"""Directive rollback protection and ``action: lift`` (issue 9.2; docs/fleet-format.md,
docs/planning.md), through the CLI.

An applied directive is lifted only by its jurisdiction's signed word (expiry, a superseding
directive, ``action: lift``). Deleting its files, editing it or putting back an older version
is refused by ``validate --state``, ``plan`` and ``apply``, on the real clock, and audited.
Real local sites and a real SQLite state, as a user runs them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.reconcile.rollback import ROLLBACK_REFUSED
from orchestrator.state import open_store
from tests.fleet.builder import DIRECTIVE_YAML, sign
from tests.reconcile.conftest import LocalFleet

D = "directives/us-d1.yaml"
LIFT_YAML = """\
id: us-lift-d1
jurisdiction: US
issuer: us-court
reference: "court order lifting us-d1"
action: lift
effective: 2026-02-01T00:00:00Z
supersedes: us-d1
"""


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def apply(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "apply", "--yes", "--fleet", str(root), "--sites", "local", *extra)


def plan(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "plan", "--fleet", str(root), "--sites", "local", *extra)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def with_expiry(expires: datetime) -> str:
    return DIRECTIVE_YAML.replace("expires: null", f"expires: {iso(expires)}")


def audited(root: Path, kind: str) -> list[dict[str, object]]:
    store = open_store(None, root, create=False)
    try:
        return [dict(e.payload) for e in store.audit.entries() if e.kind == kind]
    finally:
        store.close()


def serial(root: Path) -> int:
    store = open_store(None, root, create=False)
    try:
        return store.serial()
    finally:
        store.close()


def test_deleting_an_applied_directive_lifts_nothing(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root)[0] == 0
    (root / D).unlink()
    (root / (D + ".sig")).unlink()
    before = serial(root)

    code, _, err = plan(capsys, root)
    assert code == 1
    assert "us-d1 (US) is missing from the fleet" in err
    assert "supersedes: us-d1" in err and "action: lift" in err  # how it may be lifted
    code, _, err = apply(capsys, root)
    assert code == 1 and "us-d1" in err
    assert serial(root) == before  # nothing was applied: the suspension stays published
    # --at never moves the judgement off the real clock
    code, _, err = plan(capsys, root, "--at", "2099-01-01T00:00:00Z")
    assert code == 1 and "us-d1" in err
    code, out, err = cli(
        capsys,
        "validate",
        "--fleet",
        str(root),
        "--state",
        str(root / ".sovereign/state.db"),
        "--json",
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["valid"] is False and doc["errors"][0]["id"] == "us-d1"
    refusals = audited(root, ROLLBACK_REFUSED)
    assert len(refusals) == 4
    assert all('"kind": "missing"' in json.dumps(r) for r in refusals)
    # without --state, validate judges against the default state, which exists: refused too
    # (judged alone, it would be a valid fleet; docs/cli.md, validate)
    code, out, _ = cli(capsys, "validate", "--fleet", str(root), "--json")
    assert code == 1 and json.loads(out)["errors"][0]["id"] == "us-d1"


def test_an_edited_directive_in_force_is_refused(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root)[0] == 0
    path = root / D
    path.write_text(path.read_text().replace("nationality_not_in: [US]", "nationality_in: [FR]"))
    (root / (D + ".sig")).unlink()
    sign(path, "us-gov")  # validly signed: but a changed directive is not a lift
    code, _, err = plan(capsys, root)
    assert code == 1 and "us-d1 (US) was changed in directives/us-d1.yaml" in err


def test_an_expired_directive_may_go(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    root = local_fleet(files={D: with_expiry(past)})
    assert apply(capsys, root)[0] == 0
    (root / D).unlink()
    (root / (D + ".sig")).unlink()
    assert plan(capsys, root)[0] == 0


def test_expiry_is_judged_with_the_clock_skew_window(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    just_now = datetime.now(UTC) - timedelta(seconds=30)
    root = local_fleet(files={D: with_expiry(just_now)})
    assert apply(capsys, root)[0] == 0
    (root / D).unlink()
    (root / (D + ".sig")).unlink()
    code, _, err = plan(capsys, root)
    assert code == 1 and "us-d1" in err  # it may still be in force on a clock a minute slow


FUTURE = "directives/us-w-future.yaml"
FUTURE_WITHDRAW = """\
id: us-w-future
jurisdiction: US
issuer: us-gov
reference: "withdraw m-open in three days"
action: withdraw
models: [m-open]
effective: {effective}
"""


def test_a_future_order_cannot_be_cancelled_by_deleting_it(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 19, "cancel a future order": an applied directive not yet effective is
    protected too, until it expires (here: open-ended)."""
    effective = iso(datetime.now(UTC) + timedelta(days=3))
    root = local_fleet(files={FUTURE: FUTURE_WITHDRAW.format(effective=effective)})
    assert apply(capsys, root)[0] == 0
    (root / FUTURE).unlink()
    (root / (FUTURE + ".sig")).unlink()
    before = serial(root)
    code, _, err = apply(capsys, root)
    assert code == 1
    assert "us-w-future (US) is missing from the fleet" in err and "not yet effective" in err
    assert serial(root) == before
    assert plan(capsys, root)[0] == 1


def test_an_older_version_is_never_replayed(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    root = local_fleet(files={D: with_expiry(past)})
    assert apply(capsys, root)[0] == 0
    old_text, old_sig = (root / D).read_bytes(), (root / (D + ".sig")).read_bytes()
    later = datetime.now(UTC) + timedelta(days=30)
    (root / D).write_text(with_expiry(later).replace("test directive", "renewed"))
    (root / (D + ".sig")).unlink()
    sign(root / D, "us-gov")
    assert apply(capsys, root)[0] == 0  # the old version had expired: a new one may follow
    (root / D).write_bytes(old_text)
    (root / (D + ".sig")).write_bytes(old_sig)
    code, _, err = plan(capsys, root)
    assert code == 1 and "older version" in err


def test_a_lift_lifts_and_then_the_lifted_directive_may_expire_from_view(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root)[0] == 0
    explain = ["explain", "--fleet", str(root), "-m", "m-us", "-r", "US", "-n", "DE", "--json"]
    code, out, _ = cli(capsys, *explain)
    assert code == 0 and json.loads(out)["route"] == []  # suspended for non-US nationals

    (root / "directives" / "us-lift-d1.yaml").write_text(LIFT_YAML)
    sign(root / "directives" / "us-lift-d1.yaml", "us-court")
    code, out, err = plan(capsys, root, "--json")
    assert code == 0, err
    causes = {c["cause"] for c in json.loads(out)["changes"]}
    assert causes == {"directive:us-lift-d1"}
    assert apply(capsys, root)[0] == 0
    code, out, _ = cli(capsys, *explain)
    assert json.loads(out)["route"] == ["us-1"]
    # The lift is a signed record too: deleting it is refused, it would bring us-d1 back.
    (root / "directives" / "us-lift-d1.yaml").unlink()
    (root / "directives" / "us-lift-d1.yaml.sig").unlink()
    code, _, err = plan(capsys, root)
    assert code == 1 and "us-lift-d1 (US) is missing" in err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("supersedes: us-d1\n", ""), "a lift must name the directive it lifts"),
        (("action: lift\n", "action: lift\nmodels: [m-us]\n"), "remove 'models'"),
    ],
)
def test_a_lift_names_only_what_it_supersedes(
    local_fleet: LocalFleet,
    capsys: pytest.CaptureFixture[str],
    edit: tuple[str, str],
    message: str,
) -> None:
    root = local_fleet(files={"directives/us-lift-d1.yaml": LIFT_YAML.replace(*edit)})
    code, _, err = cli(capsys, "validate", "--fleet", str(root))
    assert code == 1 and message in err


def test_a_suspend_without_models_is_an_error(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet(files={D: DIRECTIVE_YAML.replace("models: [m-us]\n", "")})
    code, _, err = cli(capsys, "validate", "--fleet", str(root))
    assert code == 1 and f"{root}/{D}:1: models: required field is missing" in err
