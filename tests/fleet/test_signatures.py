"""Directive signatures: exact bytes, own-jurisdiction authorities, distinct signers, threshold."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import FleetError, SignatureError
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.signing import (
    generate_key,
    public_key_of,
    sign_file_bytes,
    verify_signatures,
    write_signature,
)
from tests.fleet.builder import DIRECTIVE_FILE, FleetFactory, keys, sign

D = DIRECTIVE_FILE


def problems_of(root: Path) -> list[tuple[str, int | None, str]]:
    with pytest.raises(FleetError) as caught:
        load_fleet(root)
    return [(Path(p.file).name, p.line, p.message) for p in caught.value.problems]


def test_signed_directive_records_signers_and_digest(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    directive = load_fleet(root).directives["us-d1"]
    assert directive.signers == ("us-gov",)
    assert directive.sha256 == hashlib.sha256((root / D).read_bytes()).hexdigest()
    assert directive.source == D


def test_tampered_byte_fails(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory()
    path = root / D
    path.write_bytes(path.read_bytes().replace(b"test directive", b"test directivE"))
    got = problems_of(root)
    assert (
        "us-d1.yaml.sig",
        1,
        "signature of 'us-gov' does not verify: the directive changed "
        "after signing, or it was signed with another key",
    ) in got
    assert any("0 valid signature(s)" in m for _, _, m in got)
    assert len(got) == 2


def test_wrong_key_fails(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(sign_directives=False)
    other_pem, _ = generate_key()
    path = root / D
    write_signature(path, "us-gov", sign_file_bytes(other_pem, path.read_bytes()))
    got = problems_of(root)
    assert (
        "us-d1.yaml.sig",
        1,
        "signature of 'us-gov' does not verify: the directive changed "
        "after signing, or it was signed with another key",
    ) in got


def test_below_threshold(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={"us.yaml": [("directive_threshold: 1", "directive_threshold: 2")]}
    )
    assert problems_of(root) == [
        (
            "us-d1.yaml.sig",
            None,
            "1 valid signature(s) (verified: us-gov); US requires 2 from distinct authorities "
            "(authorities: us-court, us-gov)",
        )
    ]


def test_threshold_two_distinct_authorities(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={"us.yaml": [("directive_threshold: 1", "directive_threshold: 2")]}
    )
    sign(root / D, "us-court")
    assert load_fleet(root).directives["us-d1"].signers == ("us-gov", "us-court")


def test_duplicate_lines_of_one_authority_count_once(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        mutate={"us.yaml": [("directive_threshold: 1", "directive_threshold: 2")]}
    )
    sig = root / (D + ".sig")
    line = sig.read_text()
    sig.write_text(line + line)
    got = problems_of(root)
    assert got == [
        (
            "us-d1.yaml.sig",
            None,
            "1 valid signature(s) (verified: us-gov); US requires "
            "2 from distinct authorities (authorities: us-court, us-gov)",
        )
    ]


def test_authority_of_another_jurisdiction_does_not_count(
    signed_fleet_factory: FleetFactory,
) -> None:
    root = signed_fleet_factory()
    sign(root / D, "eu-gov")
    assert problems_of(root) == [
        (
            "us-d1.yaml.sig",
            2,
            "'eu-gov' is an authority of EU, not of this directive's jurisdiction (valid: "
            "us-court, us-gov)",
        )
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("us-gov", "malformed line; expected 'AUTHORITY_ID BASE64_SIGNATURE'"),
        ("us-gov a b", "malformed line; expected 'AUTHORITY_ID BASE64_SIGNATURE'"),
        ("nobody AAAA", "unknown authority 'nobody' (valid: us-court, us-gov)"),
        ("us-court !!notbase64!!", "signature of 'us-court' is not valid base64"),
        (
            "us-court " + base64.b64encode(b"short").decode(),
            "signature of 'us-court' does not verify",
        ),
    ],
)
def test_bad_signature_lines(signed_fleet_factory: FleetFactory, line: str, message: str) -> None:
    root = signed_fleet_factory()
    sig = root / (D + ".sig")
    sig.write_text(sig.read_text() + "\n# a comment is fine\n" + line + "\n")
    got = problems_of(root)
    assert len(got) == 1
    name, number, text = got[0]
    assert (name, number) == ("us-d1.yaml.sig", 4)
    assert text.startswith(message)


def test_issuer_must_sign(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(sign_directives=False)
    sign(root / D, "us-court")
    assert problems_of(root) == [
        (
            "us-d1.yaml.sig",
            None,
            "the issuer 'us-gov' has not signed; a directive must carry its issuer's signature "
            "(verified: us-court)",
        )
    ]


def test_binary_signature_file(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory({D + ".sig": b"\xff\xfe\x00"})
    got = problems_of(root)
    assert (
        "us-d1.yaml.sig",
        1,
        "not UTF-8 text; expected lines 'AUTHORITY_ID BASE64_SIGNATURE'",
    ) in got


def test_write_signature_replaces_own_line_and_keeps_others(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_bytes(b"id: x\n")
    write_signature(path, "a", "AAA=")
    write_signature(path, "b", "BBB=")
    write_signature(path, "a", "CCC=")
    assert (tmp_path / "d.yaml.sig").read_text() == "b BBB=\na CCC=\n"


def test_write_signature_rejects_spaces(tmp_path: Path) -> None:
    with pytest.raises(SignatureError):
        write_signature(tmp_path / "d.yaml", "a b", "AAA=")


def test_private_key_must_be_ed25519() -> None:
    with pytest.raises(SignatureError, match="is not a readable private key"):
        public_key_of(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    pem, public = generate_key()
    assert public_key_of(pem) == public
    assert len(base64.b64decode(public)) == 32


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), flip=st.integers(min_value=0, max_value=10_000))
def test_any_changed_byte_voids_the_signature(data: bytes, flip: int) -> None:
    pem, public = keys()["us-gov"]
    own = {"us-gov": base64.b64decode(public)}
    sig = f"us-gov {sign_file_bytes(pem, data)}\n".encode()
    assert verify_signatures(data, sig, own, {}).meets(1)
    changed = bytearray(data + b"!")
    changed[flip % len(changed)] ^= 0x01
    result = verify_signatures(bytes(changed), sig, own, {})
    assert not result.meets(1)
    assert result.signers == ()
