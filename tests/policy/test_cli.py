"""The explain and impact commands through the real CLI entry point (in process)."""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.cli.app import main

REGIONS = Path(__file__).resolve().parents[2] / "regions"
JUNE_12 = REGIONS / "directives" / "us-doc-2026-06-12.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def explain_args(*extra: str) -> list[str]:
    return ["explain", "--fleet", str(REGIONS), *extra]


def test_explain_json_is_only_json_with_the_spec_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        *explain_args("-m", "fable-5", "-r", "us", "-n", "de", "--at", "2026-06-13", "--json"),
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["principal"] == {"residency": "US", "nationalities": ["DE"], "groups": []}
    assert doc["home"] == "US" and doc["route"] == []
    assert doc["sites"]["aws-us-east-1"]["reasons"][0]["ref"] == "us-doc-2026-06-12"


def test_explain_human_output_names_rules_and_route(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        *explain_args("-m", "fable-5", "-r", "JP", "-n", "JP", "--at", "2026-06-13T00:00:00Z"),
    )
    assert code == 0
    assert "route: gcp-asia-northeast1" in out
    assert "us-doc-2026-06-12" in out


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (("-m", "gpt-9", "-r", "DE"), "unknown model 'gpt-9'", "fable-5, mistral-large-3"),
        (("-m", "fable-5", "-r", "Germany"), "invalid residency", "ISO 3166-1 alpha-2"),
        (("-m", "fable-5", "-r", "DE", "-n", "QQ"), "invalid nationality", "ISO 3166-1"),
        (("-m", "fable-5", "-r", "DE", "--at", "tomorrow"), "invalid time", "ISO 8601"),
        (
            (
                "-m",
                "fable-5",
            ),
            "needs --model and --residency",
            "sovereign explain",
        ),
    ],
)
def test_explain_rejects_bad_input_with_a_hint(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str, hint: str
) -> None:
    code, out, err = run(capsys, *explain_args(*args))
    assert code == 1 and out == ""
    assert message in err and hint in err
    assert "Traceback" not in err
    code, out, err = run(capsys, *explain_args(*args, "--json"))
    error = json.loads(out)["error"]  # docs/cli.md: the failure is JSON on stdout
    assert code == 1 and err == ""
    assert message in error["message"] and hint in error["hint"] and error["exit_code"] == 1


def test_batch_answers_every_line_in_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    queries = [
        {"model": "fable-5", "residency": "US", "nationalities": ["DE"], "at": "2026-06-11"},
        {"model": "fable-5", "residency": "US", "nationalities": ["DE"], "at": "2026-06-13"},
        {
            "model": "mythos-5",
            "residency": "US",
            "nationalities": ["DE"],
            "groups": ["trusted-partners"],
            "at": "2026-06-27T00:00:00Z",
        },
        {"model": "olmo-3", "residency": "JP"},
    ]
    batch = tmp_path / "q.jsonl"
    batch.write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    code, out, _ = run(capsys, *explain_args("--batch", str(batch)))
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert [d["model"] for d in lines] == ["fable-5", "fable-5", "mythos-5", "olmo-3"]
    assert lines[0]["route"] == ["aws-us-east-1", "gcp-us-central1"]
    assert lines[1]["route"] == []
    assert lines[2]["route"] == ["aws-us-east-1", "gcp-us-central1"]
    assert lines[3]["principal"] == {"residency": "JP", "nationalities": [], "groups": []}
    # each line equals the single-query answer
    code, single, _ = run(
        capsys,
        *explain_args("-m", "fable-5", "-r", "US", "-n", "DE", "--at", "2026-06-13", "--json"),
    )
    assert json.loads(single) == lines[1]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not json", "not JSON"),
        ('{"model": "fable-5"}', '"model" and "residency" are required'),
        ('{"model": "nope", "residency": "US"}', "unknown model 'nope'"),
        ('{"model": "fable-5", "residency": "US", "extra": 1}', "unknown field(s) extra"),
        ('{"model": "fable-5", "residency": "US", "groups": "x"}', '"groups" must be'),
        ('{"model": "fable-5", "residency": "US", "at": "soon"}', "invalid time"),
        ('{"model": "fable-5", "residency": "Germany"}', "invalid residency"),
        ("", "the line is blank"),
        ("   ", "the line is blank"),
        ('{"model": "fable-5", "model": "olmo-3", "residency": "US"}', 'duplicate key "model"'),
        ("[" * 100_000, "nested too deeply"),
        ('{"model": "fable-5", "residency": "\xff"}', "not valid UTF-8 (byte 35"),
    ],
)
def test_a_bad_batch_line_gets_its_own_error_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    bad: str,
    message: str,
) -> None:
    batch = tmp_path / "q.jsonl"
    raw = bad.encode("utf-8").replace(b"\xc3\xbf", b"\xff")  # a lone non-UTF-8 byte
    good = b'{"model": "olmo-3", "residency": "US", "at": "2026-06-13"}'
    data = good + b"\n" + raw + b"\n" + good + b"\n"
    batch.write_bytes(data)
    code, out, err = run(capsys, *explain_args("--batch", str(batch)))
    assert code == 1  # a pipeline that checks the exit code fails closed
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 3
    assert lines[0] == lines[2] and lines[0]["route"]  # the good lines around it are answered
    error = lines[1]["error"]
    assert error["line"] == 2 and message in error["message"] and error["hint"]
    assert error["exit_code"] == 1 and error["type"] == "UsageError"
    assert f"line 2: {message}" in err and "1 of 3 batch line(s)" in err
    assert "Traceback" not in err
    # The same bytes on standard input give the same answer; with --json stderr stays quiet.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, piped, err = run(capsys, *explain_args("--batch", "-", "--json"))
    assert (code, piped, err) == (1, out, "")


# A batch line and the single query it stands for (explain --model ... --json).
GOOD_QUERIES = [
    (
        {"model": "fable-5", "residency": "US", "nationalities": ["DE"], "at": "2026-06-13"},
        ("-m", "fable-5", "-r", "US", "-n", "DE", "--at", "2026-06-13"),
    ),
    (
        {"model": "fable-5", "residency": "DE", "at": "2026-06-11T00:00:00Z"},
        ("-m", "fable-5", "-r", "DE", "--at", "2026-06-11T00:00:00Z"),
    ),
    (
        {
            "model": "mythos-5",
            "residency": "US",
            "nationalities": ["DE"],
            "groups": ["trusted-partners"],
            "at": "2026-06-27T00:00:00Z",
        },
        (
            "-m",
            "mythos-5",
            "-r",
            "US",
            "-n",
            "DE",
            "-g",
            "trusted-partners",
            "--at",
            "2026-06-27T00:00:00Z",
        ),
    ),
    (
        {"model": "sarvam-2", "residency": "IN", "nationalities": ["IN", "US"], "at": "2026-07-01"},
        ("-m", "sarvam-2", "-r", "IN", "-n", "IN", "-n", "US", "--at", "2026-07-01"),
    ),
]
BAD_LINES = st.one_of(
    st.sampled_from(
        [
            b"",
            b"  \t",
            b"not json",
            b"[]",
            b'{"model": "fable-5", "model": "olmo-3", "residency": "US"}',
            b'{"model": "gpt-9", "residency": "US"}',
            b'{"model": "fable-5", "residency": "QQ"}',
            b'{"model": "fable-5", "residency": "DE", "at": "soon"}',
            b'{"model": "fable-5", "residency": "DE\xff"}',
            b"[" * 5000,
        ]
    ),
    # any bytes at all that cannot parse as a query (no newline: one line stays one line)
    st.binary(max_size=30).map(lambda b: b"\x00" + b.replace(b"\n", b"")),
)
LINES = st.lists(
    st.one_of(st.integers(0, len(GOOD_QUERIES) - 1), BAD_LINES), min_size=1, max_size=6
)


def test_batch_output_lines_match_input_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """For any mix of good and bad lines: one output line per input line, in order; a good
    line's output is exactly the single ``explain --json`` answer, a bad one is an error
    object naming its line; exit 1 exactly when some line is bad."""
    single: dict[int, object] = {}

    @settings(max_examples=25, deadline=None)
    @given(lines=LINES, final_newline=st.booleans())
    def check(lines: list[int | bytes], final_newline: bool) -> None:
        raw = [json.dumps(GOOD_QUERIES[x][0]).encode() if isinstance(x, int) else x for x in lines]
        # (an empty last line exists only with its newline: b"" is an empty file)
        data = b"\n".join(raw) + (b"\n" if final_newline or not raw[-1] else b"")
        with tempfile.TemporaryDirectory() as tmp:
            batch = Path(tmp) / "q.jsonl"
            batch.write_bytes(data)
            code, out, err = run(capsys, *explain_args("--batch", str(batch), "--json"))
        assert "Traceback" not in err
        answers = [json.loads(x) for x in out.splitlines()]
        # a last line without its newline is still a line
        assert len(answers) == len(lines)
        for n, (line, answer) in enumerate(zip(lines, answers, strict=True), start=1):
            if isinstance(line, int):
                if line not in single:
                    c, one, _ = run(capsys, *explain_args(*GOOD_QUERIES[line][1], "--json"))
                    assert c == 0
                    single[line] = json.loads(one)
                assert answer == single[line]
            else:
                assert answer["error"]["line"] == n and answer["error"]["message"]
        assert code == (0 if all(isinstance(x, int) for x in lines) else 1)

    check()


def test_impact_of_an_unsigned_directive_warns_and_reports(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text(JUNE_12.read_text().replace("id: us-doc-2026-06-12", "id: us-draft"))
    code, out, err = run(
        capsys, "impact", str(draft), "--fleet", str(REGIONS), "--at", "2026-06-01", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["directive"] == "us-draft" and doc["signed"] is False
    assert "not signed" in err
    assert doc["summary"]["collateral"] == 0
    # us-doc-2026-06-12 is already in force at its effective: a duplicate changes nothing more
    # than it, and the superseding 06-26 is not in force yet on 06-12.
    assert doc["at"] == "2026-06-12T00:00:00Z"
    assert doc["changes"] == []


def test_impact_of_a_fleet_directive_is_compared_without_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(
        capsys, "impact", str(JUNE_12), "--fleet", str(REGIONS), "--json", "--at", "2026-06-13"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["signed"] is True
    effects = {(c["model"], c["residency"], c["effect"]) for c in doc["changes"]}
    assert ("fable-5", "US", "refused") in effects
    assert ("mythos-5", "JP", "rerouted") in effects
    assert all(c["model"] in {"fable-5", "mythos-5"} for c in doc["changes"])
    refused_us = [c for c in doc["changes"] if c["residency"] == "US"]
    assert {tuple(c["audience"]["nationalities"]) for c in refused_us} == {(), ("*",)}
    assert doc["summary"]["refused"] == len(refused_us)


def test_impact_human_output_counts_collateral(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "impact", str(JUNE_12), "--fleet", str(REGIONS), "--at", "2026-06-13"
    )
    assert code == 0
    assert "refused" in out and "rerouted" in out
    assert "collateral (changes outside the directive's reach): 0" in out


def test_impact_refuses_a_bad_signature(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text(JUNE_12.read_text().replace("id: us-doc-2026-06-12", "id: us-draft"))
    (tmp_path / "draft.yaml.sig").write_text(
        (REGIONS / "directives" / "us-doc-2026-06-12.yaml.sig").read_text()
    )
    code, out, err = run(capsys, "impact", str(draft), "--fleet", str(REGIONS), "--json")
    assert code == 1 and json.loads(out)["error"]["exit_code"] == 1
    assert "Traceback" not in err
