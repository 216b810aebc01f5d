"""Attested tenants: tenants/NAME.yaml + .sig against fleet.yaml attestors (docs/identity.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.loader import load_fleet, load_fleet_files
from orchestrator.fleet.signing import generate_key, sign_file_bytes
from tests.fleet.builder import FleetFactory, keys, sign, tenant_yaml
from tests.fleet.test_cli import run
from tests.fleet.test_fuzz import signed_files

T = "tenants/acme.yaml"


def test_a_signed_tenant_is_in_the_fleet_and_validates(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory({T: tenant_yaml(nationalities=("DE", "FR"))})
    tenant = load_fleet(root).tenants["acme"]
    assert (tenant.residency, tenant.nationalities) == ("DE", frozenset({"DE", "FR"}))
    assert tenant.attested_by == "notary" and tenant.source == T
    assert tenant.expires == datetime(2099, 1, 1, tzinfo=UTC)
    code, out, _ = run(["validate", "--fleet", str(root)], capsys)
    assert code == 0 and "1 attested tenant" in out
    code, out, _ = run(
        ["directive", "verify", str(root / T), "--fleet", str(root), "--json"], capsys
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["valid"] and doc["tenant"] == "acme" and doc["signers"] == ["notary"]


@pytest.mark.parametrize(
    ("files", "where", "message"),
    [
        ({f"{T}.sig": None}, f"{T}.sig", "unsigned"),
        ({T: tenant_yaml(attested_by="nobody")}, T, "not an attestor"),
        ({T: tenant_yaml() + "colour: blue\n"}, T, "unknown key 'colour'"),
        ({T: tenant_yaml().replace("expires: 2099-01-01T00:00:00Z\n", "")}, T, "expires"),
        ({T: tenant_yaml(residency="Germany")}, T, "ISO 3166-1"),
    ],
)
def test_a_tenant_that_does_not_verify_is_left_out_and_fails_validate(
    signed_fleet_factory: FleetFactory,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str | None],
    where: str,
    message: str,
) -> None:
    root = signed_fleet_factory({T: tenant_yaml(), **files})
    if f"{T}.sig" in files:
        (root / f"{T}.sig").unlink(missing_ok=True)
    fleet = load_fleet(root)  # the rest of the fleet (its law) does not wait on a tenant
    assert "acme" not in fleet.tenants
    assert any(message in p.message or message in p.field for p in fleet.tenant_problems)
    code, out, _ = run(["validate", "--fleet", str(root), "--json"], capsys)
    assert code == 1
    errors = json.loads(out)["errors"]
    found = [e for e in errors if e["file"].endswith(where)]
    assert found and (where.endswith(".sig") or all(e["line"] for e in found))


def test_a_changed_byte_voids_the_attestation(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory({T: tenant_yaml()})
    path = root / T
    path.write_text(path.read_text().replace("nationalities: [DE]", "nationalities: [US]"))
    fleet = load_fleet(root)
    assert "acme" not in fleet.tenants
    assert any("does not verify" in p.message for p in fleet.tenant_problems)
    sign(path, "notary")
    assert load_fleet(root).tenants["acme"].nationalities == frozenset({"US"})


def test_sign_refuses_a_key_that_is_not_the_attestors(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = signed_fleet_factory({T: tenant_yaml(), f"{T}.sig": None})
    (root / f"{T}.sig").unlink(missing_ok=True)
    other = tmp_path / "other.pem"
    other.write_bytes(generate_key()[0])
    other.chmod(0o600)
    code, _, err = run(
        [
            "directive",
            "sign",
            str(root / T),
            "--key",
            str(other),
            "--authority",
            "notary",
            "--fleet",
            str(root),
        ],
        capsys,
    )
    assert code == 1 and "attestor 'notary'" in err


def test_an_expired_tenant_verifies_but_validate_warns(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory({T: tenant_yaml(expires="2020-01-01T00:00:00Z")})
    assert load_fleet(root).tenants["acme"].expired(datetime.now(UTC))
    code, _, err = run(["validate", "--fleet", str(root)], capsys)
    assert code == 0 and "attestation expired" in err


def test_explain_answers_for_a_tenants_attested_principal(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory(
        {T: tenant_yaml(residency="US", nationalities=("DE",), expires="2030-01-01T00:00:00Z")}
    )
    argv = ["explain", "--fleet", str(root), "--model", "m-us", "--tenant", "acme", "--json"]
    code, out, _ = run([*argv, "--at", "2027-01-01T00:00:00Z"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["principal"] == {
        "residency": "US",
        "nationalities": ["DE"],
        "groups": [],
    }
    assert doc["route"] == [] and doc["tenant"]["id"] == "acme"  # the US directive refuses
    assert doc["tenant"]["expired"] is False and doc["tenant"]["attested_by"] == "notary"
    code, out, _ = run([*argv, "--at", "2031-01-01T00:00:00Z"], capsys)
    assert code == 0 and json.loads(out)["tenant"]["expired"] is True
    code, out, _ = run([*argv[:-3], "--tenant", "nobody", "--json"], capsys)
    assert code == 1 and "no valid attestation" in json.loads(out)["error"]["message"]
    code, out, _ = run([*argv, "--residency", "DE"], capsys)
    assert code == 1 and "--tenant" in json.loads(out)["error"]["message"]


_TENANT_LINES = tenant_yaml().splitlines()
_BASE = signed_files()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_TENANT_LINES) - 1),
            st.sampled_from(["", "null", "[]", "{}", "- x", "ZZ", "de", "'x'", ": :", "&a *a"]),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_a_damaged_tenant_is_left_out_never_half_read(edits: list[tuple[int, str]]) -> None:
    lines = list(_TENANT_LINES)
    for index, value in edits:
        key = lines[index].split(":", 1)[0]
        lines[index] = f"{key}: {value}" if ":" in lines[index] else value
    damaged = ("\n".join(lines) + "\n").encode()
    pem, _ = keys()["notary"]
    files = {**_BASE, T: damaged, f"{T}.sig": f"notary {sign_file_bytes(pem, damaged)}\n".encode()}
    fleet = load_fleet_files(files, "regions")  # the rest of the fleet loads whatever T holds
    tenant = next(iter(fleet.tenants.values()), None)  # an edit may rename it
    if tenant is None:
        assert fleet.tenant_problems  # left out, and said why
    else:  # still a whole, valid attestation: every field as the schema demands
        assert tenant.residency.isupper() and tenant.attested_by == "notary"
        assert all(len(n) == 2 for n in tenant.nationalities)
