"""Issue 19: nobody without a jurisdiction's keys can change its law.

Each attack a fleet-repository writer without keys could make (docs/security.md, threat
model) is tried after a first apply, on SQLite and on S3 state (moto), through ``apply``, a
saved plan (``plan --out`` then ``apply FILE``) and ``controller --once``. Each must be refused:
exit 1, the jurisdiction or file named, nothing applied (the state serial and the applied
fleet unchanged, so the published route table is the one before).

A legitimate rotation works end to end: a ``rotate`` signed by the pinned key adds ``us-bis``,
then a ``lift`` signed by ``us-bis`` alone is applied.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.fleet.signing import generate_key, sign_file_bytes, write_signature
from orchestrator.state import open_store
from tests.fleet.builder import keys, sign
from tests.reconcile.conftest import LocalFleet

ROGUE_PEM, ROGUE_PUBLIC = generate_key()
BIS_PEM, BIS_PUBLIC = generate_key()

LIFT_BY = """\
id: us-lift-d1
jurisdiction: US
issuer: {issuer}
reference: "lift us-d1"
action: lift
effective: 2026-02-01T00:00:00Z
supersedes: us-d1
"""

ROTATE = """\
id: us-rotate-bis
jurisdiction: US
issuer: us-gov
reference: "BIS key ceremony"
action: rotate
authorities:
  - id: us-bis
    public_key: "{bis}"
  - id: us-court
    public_key: "{court}"
  - id: us-gov
    public_key: "{gov}"
directive_threshold: 1
effective: 2026-12-01T00:00:00Z
"""

BIS_AUTHORITY = '  - id: us-bis\n    public_key: "{bis}"\ndirective_threshold: 1'


# --- state backends -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from tests.cloud_servers import cloud_credentials, moto_server

    with cloud_credentials(), moto_server() as url:
        yield url


# s3 runs on moto: slow (make test-fast leaves it out)
@pytest.fixture(params=["sqlite", pytest.param("s3", marks=pytest.mark.slow)])
def state(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    import boto3

    url = request.getfixturevalue("moto_url")
    from tests.cloud_servers import DUMMY_ENV

    for key, value in DUMMY_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    bucket = f"trust-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/prod"


# --- running the CLI ------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def common(root: Path, state: str) -> list[str]:
    return ["--fleet", str(root), "--sites", "local", "--state", state]


def apply(capsys: pytest.CaptureFixture[str], root: Path, state: str) -> tuple[int, str, str]:
    return cli(capsys, "apply", "--yes", *common(root, state))


def attempt(
    capsys: pytest.CaptureFixture[str], root: Path, state: str, entry: str
) -> tuple[int, str]:
    """Try to carry the fleet out through ``entry``; (exit code, everything printed)."""
    if entry == "apply":
        code, out, err = apply(capsys, root, state)
        return code, out + err
    if entry == "saved-plan":
        saved = root.parent / f"{root.name}-plan.json"
        code, out, err = cli(capsys, "plan", "--out", str(saved), *common(root, state))
        if code != 0:
            assert not saved.exists()  # a refused plan is never saved for apply
            return code, out + err
        code, out2, err2 = cli(capsys, "apply", str(saved), "--yes", *common(root, state))
        return code, out + err + out2 + err2
    code, out, err = cli(capsys, "controller", "--once", *common(root, state), "--json")
    return code, out + err


def applied(root: Path, state: str) -> tuple[int, str | None]:
    store = open_store(state, root, create=False, check_lineage=False)
    try:
        fleet = store.applied_fleet()
        return store.serial(), None if fleet is None else fleet.digest
    finally:
        store.close()


ENTRIES = ["apply", "saved-plan", "controller"]


# --- the attacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_key_of_your_own_lifts_nothing(
    local_fleet: LocalFleet, state: str, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    before = applied(root, state)
    us = root / "us.yaml"
    us.write_text(
        us.read_text().replace(
            "directive_threshold: 1",
            f'  - id: us-rogue\n    public_key: "{ROGUE_PUBLIC}"\ndirective_threshold: 1',
        )
    )
    lift = root / "directives" / "us-lift-d1.yaml"
    lift.write_text(LIFT_BY.format(issuer="us-rogue"))
    write_signature(lift, "us-rogue", sign_file_bytes(ROGUE_PEM, lift.read_bytes()))

    code, said = attempt(capsys, root, state, entry)
    assert code == 1, said
    assert "authority set of US" in said and "us-rogue" in said and "added" in said
    assert applied(root, state) == before
    # validate given the state says so too, naming the profile
    code, out, _ = cli(capsys, "validate", "--fleet", str(root), "--state", state, "--json")
    assert code == 1
    errors = json.loads(out)["errors"]
    assert errors[0]["id"] == "US" and errors[0]["file"].endswith("us.yaml")


@pytest.mark.parametrize("entry", ENTRIES)
def test_two_names_for_one_key_are_refused(
    local_fleet: LocalFleet, state: str, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    before = applied(root, state)
    us = root / "us.yaml"
    us.write_text(
        us.read_text().replace(
            "directive_threshold: 1",
            f'  - id: us-gov-2\n    public_key: "{keys()["us-gov"][1]}"\ndirective_threshold: 2',
        )
    )
    sig = root / "directives" / "us-d1.yaml.sig"
    line = sig.read_text().strip()
    sig.write_text(f"{line}\n{line.replace('us-gov ', 'us-gov-2 ')}\n")
    code, said = attempt(capsys, root, state, entry)
    assert code == 1, said
    assert "us.yaml" in said and "same public key as 'us-gov'" in said
    assert applied(root, state) == before


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_future_order_cannot_be_cancelled(
    local_fleet: LocalFleet, state: str, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    effective = (datetime.now(UTC) + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    withdraw = (
        "id: us-w-olmo\njurisdiction: US\nissuer: us-gov\nreference: in three days\n"
        f"action: withdraw\nmodels: [m-open]\neffective: {effective}\n"
    )
    root = local_fleet(files={"directives/us-w-olmo.yaml": withdraw})
    assert apply(capsys, root, state)[0] == 0
    before = applied(root, state)
    (root / "directives" / "us-w-olmo.yaml").unlink()
    (root / "directives" / "us-w-olmo.yaml.sig").unlink()
    code, said = attempt(capsys, root, state, entry)
    assert code == 1, said
    assert "us-w-olmo (US) is missing" in said
    assert applied(root, state) == before


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_wiped_state_is_never_recreated(
    local_fleet: LocalFleet, state: str, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    if state.startswith("s3://"):
        import boto3

        bucket, _, prefix = state.removeprefix("s3://").partition("/")
        boto3.client("s3", region_name="us-east-1").delete_object(
            Bucket=bucket, Key=f"{prefix}/state.json"
        )
    else:
        Path(state).write_bytes(b"")  # `: > state.db`
    (root / "directives" / "us-d1.yaml").unlink()
    (root / "directives" / "us-d1.yaml.sig").unlink()
    code, said = attempt(capsys, root, state, entry)
    assert code == 1, said
    assert "exists but cannot be read" in said and "not re-created" in said
    if not state.startswith("s3://"):
        assert Path(state).read_bytes() == b""  # nothing was written over it


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_pinned_lineage_refuses_a_new_store(
    local_fleet: LocalFleet, state: str, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    code, out, err = cli(capsys, "state", "init", "--fleet", str(root), "--state", state, "--json")
    assert code == 0, err
    lineage = json.loads(out)["lineage"]
    with (root / "fleet.yaml").open("a") as f:
        f.write(f"state_lineage: {lineage}\n")
    assert apply(capsys, root, state)[0] == 0
    # the whole store is gone (a wiped bucket, a deleted file): nothing may start afresh
    if state.startswith("s3://"):
        import boto3

        bucket, _, prefix = state.removeprefix("s3://").partition("/")
        s3 = boto3.client("s3", region_name="us-east-1")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
    else:
        Path(state).unlink()
        for extra in ("-wal", "-shm"):
            Path(state + extra).unlink(missing_ok=True)
    code, said = attempt(capsys, root, state, entry)
    assert code == 1, said
    assert f"pins state_lineage {lineage}" in said
    if not state.startswith("s3://"):
        assert not Path(state).exists()
    # readers refuse too
    assert cli(capsys, "audit", "verify", "--fleet", str(root), "--state", state)[0] == 1


# --- the legitimate way -----------------------------------------------------------------------


def test_a_rotation_signed_by_the_pinned_key_then_a_lift_by_the_new_key(
    local_fleet: LocalFleet, state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    code, out, err = apply(capsys, root, state)
    assert code == 0, err
    code, out, _ = cli(capsys, "trust", "show", "--fleet", str(root), "--state", state, "--json")
    pinned = {p["jurisdiction"]: p for p in json.loads(out)["pins"]}
    assert [a["id"] for a in pinned["US"]["authorities"]] == ["us-court", "us-gov"]
    assert pinned["US"]["cause"] == "first apply"
    assert pinned["US"]["authorities"][0]["fingerprint"].startswith("SHA256:")
    assert pinned["US"]["fleet"] == "same"

    us = root / "us.yaml"
    us.write_text(
        us.read_text().replace("directive_threshold: 1", BIS_AUTHORITY.format(bis=BIS_PUBLIC))
    )
    rotate = root / "directives" / "us-rotate-bis.yaml"
    rotate.write_text(
        ROTATE.format(bis=BIS_PUBLIC, court=keys()["us-court"][1], gov=keys()["us-gov"][1])
    )
    sign(rotate, "us-gov")  # the pinned key vouches for the new set

    # impact names a rotation as what it is: a change of who may order
    code, out, err = cli(capsys, "impact", str(rotate), "--fleet", str(root), "--state", state)
    assert code == 0, err
    assert "who may order:" in out and "+ us-bis" in out
    code, out, _ = cli(
        capsys, "impact", str(rotate), "--fleet", str(root), "--state", state, "--json"
    )
    assert json.loads(out)["rotation"]["kind"] == "rotate"

    md = root.parent / "plan.md"
    code, out, err = cli(capsys, "plan", *common(root, state), "--json", "--markdown", str(md))
    assert code == 0, err
    trust = json.loads(out)["trust"]
    assert [(t["jurisdiction"], t["kind"], t["cause"]) for t in trust] == [
        ("US", "rotate", "directive:us-rotate-bis")
    ]
    assert "+ us-bis" in trust[0]["summary"]
    assert "Who may order" in md.read_text() and "rotate" in md.read_text()
    code, out, _ = cli(capsys, "trust", "show", "--fleet", str(root), "--state", state, "--json")
    assert {p["jurisdiction"]: p["fleet"] for p in json.loads(out)["pins"]}["US"] == "differs"
    assert apply(capsys, root, state)[0] == 0

    code, out, _ = cli(capsys, "trust", "show", "--fleet", str(root), "--state", state, "--json")
    pinned = {p["jurisdiction"]: p for p in json.loads(out)["pins"]}
    assert [a["id"] for a in pinned["US"]["authorities"]] == ["us-bis", "us-court", "us-gov"]
    assert pinned["US"]["cause"] == "directive:us-rotate-bis"

    lift = root / "directives" / "us-lift-d1.yaml"
    lift.write_text(LIFT_BY.format(issuer="us-bis"))
    write_signature(lift, "us-bis", sign_file_bytes(BIS_PEM, lift.read_bytes()))
    code, _, err = apply(capsys, root, state)
    assert code == 0, err
    code, out, _ = cli(
        capsys,
        "explain",
        "--fleet",
        str(root),
        "--state",
        state,
        "-m",
        "m-us",
        "-r",
        "US",
        "-n",
        "DE",
        "--json",
    )
    assert code == 0 and json.loads(out)["route"] == ["us-1"]  # lifted
    # the audit log says who may order changed, and why
    store = open_store(state, root, create=False)
    try:
        kinds = [e.kind for e in store.audit.entries()]
    finally:
        store.close()
    assert "trust.pinned" in kinds and "trust.rotated" in kinds


def test_a_rotation_not_signed_by_a_pinned_key_is_refused(
    local_fleet: LocalFleet, state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    before = applied(root, state)
    us = root / "us.yaml"
    us.write_text(
        us.read_text().replace("directive_threshold: 1", BIS_AUTHORITY.format(bis=BIS_PUBLIC))
    )
    rotate = root / "directives" / "us-rotate-bis.yaml"
    rotate.write_text(
        ROTATE.format(bis=BIS_PUBLIC, court=keys()["us-court"][1], gov=keys()["us-gov"][1]).replace(
            "issuer: us-gov", "issuer: us-bis"
        )
    )
    write_signature(rotate, "us-bis", sign_file_bytes(BIS_PEM, rotate.read_bytes()))
    code, said = attempt(capsys, root, state, "apply")
    assert code == 1 and "authority set of US" in said and "us-bis" in said
    assert "rotation us-rotate-bis is signed by 0 pinned key(s), 1 needed" in said
    assert applied(root, state) == before


def test_trust_reset_re_pins_on_confirmation_and_is_audited(
    local_fleet: LocalFleet, state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    us = root / "us.yaml"
    us.write_text(
        us.read_text().replace("directive_threshold: 1", BIS_AUTHORITY.format(bis=BIS_PUBLIC))
    )
    assert apply(capsys, root, state)[0] == 1
    reset = ["trust", "reset", "--jurisdiction", "US", "--reason", "INC-7 keys lost"]
    code, out, _ = cli(capsys, *reset, "--fleet", str(root), "--state", state, "--json")
    assert code == 1 and "confirmation" in json.loads(out)["error"]["message"]  # no terminal
    code, out, err = cli(capsys, *reset, "--fleet", str(root), "--state", state, "--yes")
    assert code == 0, err
    assert apply(capsys, root, state)[0] == 0
    store = open_store(state, root, create=False)
    try:
        entries = [e for e in store.audit.entries() if e.kind == "trust.reset"]
    finally:
        store.close()
    assert len(entries) == 1 and entries[0].payload["reason"] == "INC-7 keys lost"


# --- deleting a whole jurisdiction ----------------------------------------------------------


def remove_eu(root: Path) -> None:
    """Delete eu.yaml and the references to EU, as a writer of the fleet repository can."""
    (root / "eu.yaml").unlink()
    us = root / "us.yaml"
    us.write_text(us.read_text().replace("export:\n  restricted: [EU]\n", ""))


def eu_resources(root: Path, state: str) -> list[str]:
    store = open_store(state, root, create=False)
    try:
        return [
            r["address"]
            for r in store.recorded_resources()
            if (r.get("resource") or {}).get("site", {}).get("jurisdiction") == "EU"
        ]
    finally:
        store.close()


def pinned(root: Path, state: str) -> set[str]:
    store = open_store(state, root, create=False)
    try:
        return set(store.pinned_authorities())
    finally:
        store.close()


@pytest.mark.parametrize("entry", ENTRIES)
def test_deleting_a_jurisdiction_deletes_nothing_without_decommission(
    local_fleet: LocalFleet, state: str, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    held = eu_resources(root, state)
    assert held and "EU" in pinned(root, state)
    remove_eu(root)
    code, said = attempt(capsys, root, state, entry)
    assert code == 1, said
    assert "decommissions EU" in said
    assert eu_resources(root, state) == held  # nothing of EU was deleted
    assert "EU" in pinned(root, state)
    if entry == "controller":
        # it reported the decommission and went on with the others: US is in sync now
        code, out, _ = cli(capsys, "plan", *common(root, state), "--jurisdiction", "US", "--json")
        assert code == 0 and json.loads(out)["changes"] == [], out


def test_plan_lists_a_decommission_and_apply_carries_it_out_when_named(
    local_fleet: LocalFleet, state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    remove_eu(root)
    code, out, err = cli(capsys, "plan", *common(root, state), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["decommission"] == ["EU"]
    assert ("EU", "unpin") in {(t["jurisdiction"], t["kind"]) for t in doc["trust"]}
    # the others can go alone
    code, _, err = cli(capsys, "apply", "--yes", *common(root, state), "--jurisdiction", "US")
    assert code == 0, err
    assert eu_resources(root, state)
    # named, with a reason: carried out, audited, unpinned
    code, _, err = cli(capsys, "apply", "--yes", *common(root, state), "--decommission", "EU")
    assert code == 1 and "--reason" in err
    code, _, err = cli(
        capsys,
        "apply",
        "--yes",
        *common(root, state),
        "--decommission",
        "EU",
        "--reason",
        "CHG-9: EU exits",
    )
    assert code == 0, err
    assert eu_resources(root, state) == []
    assert "EU" not in pinned(root, state)
    store = open_store(state, root, create=False)
    try:
        done = [e.payload for e in store.audit.entries() if e.kind == "jurisdiction.decommissioned"]
    finally:
        store.close()
    assert done == [{"jurisdiction": "EU", "reason": "CHG-9: EU exits"}]
    assert cli(capsys, "plan", *common(root, state), "--detailed-exitcode")[0] == 0


def test_a_gateway_never_follows_a_replaced_state(
    local_fleet: LocalFleet,
    moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A state wiped and re-created under a running gateway (another lineage) is not served:
    the reload fails and the last good table stays (docs/gitops.md, pin the state)."""
    import boto3

    from orchestrator.errors import StateError
    from orchestrator.fleet.loader import load_fleet_files
    from orchestrator.gateway.sources import AppliedFleetSource
    from tests.cloud_servers import DUMMY_ENV

    for key, value in DUMMY_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    bucket = f"trust-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    state = f"s3://{bucket}/prod"
    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    reader = open_store(state, root, create=False)
    source = AppliedFleetSource(reader, lambda files: load_fleet_files(files, "applied"))
    source.load()
    for item in s3.list_objects_v2(Bucket=bucket, Prefix="prod/").get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"])
    assert apply(capsys, root, state)[0] == 0  # a fresh store: no pin in this fleet
    with pytest.raises(StateError, match="was replaced"):
        source.load()


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_site_on_foreign_soil_is_applied_bound_by_the_soil(
    local_fleet: LocalFleet, state: str, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "Move the border": an EU profile declares a site on US soil without governed_by. Adding
    a site is a legitimate change (it applies), but the US suspension binds it: the published
    table never routes a German there."""
    from orchestrator.fleet.loader import load_fleet_files
    from orchestrator.policy import rules
    from orchestrator.policy.principal import Principal

    root = local_fleet()
    assert apply(capsys, root, state)[0] == 0
    eu = root / "eu.yaml"
    eu.write_text(
        eu.read_text().replace(
            "sites:\n",
            "sites:\n  - id: eu-in-virginia\n    provider: local\n    region: local-va\n"
            "    country: US\n    operator: op-eu\n",
            1,
        )
    )
    code, said = attempt(capsys, root, state, entry)
    assert code == 0, said
    store = open_store(state, root, create=False)
    try:
        recorded = store.applied_fleet()
    finally:
        store.close()
    assert recorded is not None
    published = load_fleet_files(recorded.files, "applied")
    assert published.sites["eu-in-virginia"].governing == {"EU", "US"}
    german = Principal(residency="DE", nationalities=frozenset({"DE"}))
    assert "eu-in-virginia" not in rules.route(published, "m-us", german, datetime.now(UTC))
    assert "eu-in-virginia" in rules.route(published, "m-open", german, datetime.now(UTC))
