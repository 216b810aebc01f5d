"""Random damage to a valid fleet never produces anything but a valid Fleet or a FleetError."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import FleetError
from orchestrator.fleet.loader import load_fleet_files
from orchestrator.fleet.model import Fleet
from orchestrator.fleet.signing import sign_file_bytes
from tests.fleet.builder import default_files, issuer_of, keys


def signed_files() -> dict[str, bytes]:
    files = {rel: text.encode() for rel, text in default_files().items()}
    for rel, data in list(files.items()):
        if rel.startswith("directives/"):
            issuer = issuer_of(data.decode())
            assert issuer is not None
            pem, _ = keys()[issuer]
            files[rel + ".sig"] = f"{issuer} {sign_file_bytes(pem, data)}\n".encode()
    return files


BASE = signed_files()
NAMES = sorted(BASE)
SCALARS = st.one_of(
    st.sampled_from(
        [
            "",
            "null",
            "true",
            "[]",
            "{}",
            "- x",
            "-1",
            "1.5",
            "'x'",
            "[US, ZZ]",
            "2026-01-01",
            "*",
            "&a x",
            "*a",
            "!!binary AAAA",
            ": :",
            "{a: [",
            "NO",
        ]
    ),
    st.text(max_size=12),
)


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")


@st.composite
def damaged(draw: st.DrawFn) -> dict[str, bytes]:
    files = dict(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        rel = draw(st.sampled_from(NAMES))
        data = files.get(rel, b"")
        lines = lines_of(data)
        kind = draw(
            st.sampled_from(
                [
                    "drop_line",
                    "dup_line",
                    "truncate",
                    "garbage",
                    "replace_value",
                    "rename_key",
                    "delete",
                    "indent",
                    "swap_lines",
                ]
            )
        )
        at = draw(st.integers(min_value=0, max_value=max(len(lines) - 1, 0)))
        if kind == "drop_line" and lines:
            del lines[at]
        elif kind == "dup_line" and lines:
            lines.insert(at, lines[at])
        elif kind == "truncate":
            files[rel] = data[: draw(st.integers(min_value=0, max_value=len(data)))]
            continue
        elif kind == "garbage":
            pos = draw(st.integers(min_value=0, max_value=len(data)))
            files[rel] = data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
            continue
        elif kind == "replace_value" and lines:
            line = lines[at].decode("utf-8", "replace")
            if ":" in line:
                key = line.split(":", 1)[0]
                lines[at] = f"{key}: {draw(SCALARS)}".encode()
        elif kind == "rename_key" and lines:
            lines[at] = re.sub(
                rb"([a-z_]+):", lambda m: m.group(1)[::-1] + b":", lines[at], count=1
            )
        elif kind == "delete":
            files.pop(rel, None)
            continue
        elif kind == "indent" and lines:
            lines[at] = b"  " + lines[at]
        elif kind == "swap_lines" and len(lines) > 1:
            other = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        files[rel] = b"\n".join(lines)
    return files


def check(files: dict[str, bytes]) -> None:
    try:
        fleet = load_fleet_files(files, label="regions")
    except FleetError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.file.startswith("regions"), p
            assert p.line is None or p.line >= 1, p
            assert p.message, p
            assert p.render()
            assert p.to_json()["file"] == p.file
    else:
        assert isinstance(fleet, Fleet)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=damaged())
def test_damaged_fleets_fail_cleanly(files: dict[str, bytes]) -> None:
    check(files)


@settings(max_examples=150, deadline=None)
@given(
    rel=st.sampled_from(NAMES),
    content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
)
def test_arbitrary_content_fails_cleanly(rel: str, content: bytes) -> None:
    check({**BASE, rel: content})


def test_a_changed_directive_is_never_accepted() -> None:
    rel = "directives/us-d1.yaml"
    changed = {**BASE, rel: BASE[rel].replace(b"m-us", b"m-open")}
    try:
        load_fleet_files(changed)
    except FleetError as exc:
        assert any(p.file.endswith(".sig") for p in exc.problems)
    else:  # pragma: no cover - the point of the test
        raise AssertionError("a directive changed after signing was accepted")
