"""Issue 26's "done when": decisions logged by the real gateway across a directive's arrival are
all re-judged lawful; an edited line is a violation; a deleted line is a gap.

Real signed fleet files, a real SQLite state (each fleet recorded as apply records it, with the
audit entries apply writes), the gateway over HTTP with its decision log, 1,000 random requests
(500 before the suspension is applied, 500 after), then ``sovereign evidence`` in process.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.fleet.digest import fleet_digest
from orchestrator.fleet.loader import load_fleet_files, read_fleet_files
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.decisionlog import DecisionLogSettings
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import AppliedFleetSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.state import StateStore, open_store
from tests.cli.support import run_cli
from tests.fleet.builder import DIRECTIVE_FILE, FleetFactory
from tests.gateway.support import make_keys, wait_for

pytestmark = pytest.mark.slow  # a real gateway serving 1,000 requests, subprocess-free

CHAT = "/v1/chat/completions"
EACH_SIDE = 500
PERIOD = ("--from", "2026-01-01", "--to", "2100-01-01")


def apply_recorded(store: StateStore, root: Path) -> str:
    """Record ``root`` as applied, with the audit entries ``apply`` writes around it."""
    files = read_fleet_files(root)
    digest = fleet_digest(files)
    fleet = load_fleet_files(files, str(root))
    known = {str(e.payload.get("id")) for e in store.audit.entries() if e.kind == "directive.added"}
    for d in fleet.directives.values():
        if d.id not in known:
            store.audit.append(
                "directive.added", {"id": d.id, "source": d.source, "sha256": d.sha256}
            )
    store.audit.append("apply.started", {"fleet_digest": digest, "serial": store.serial()})
    with store.lock("apply") as lease:
        store.record_applied_fleet(lease, files)
    return digest


def deploy(root: Path, site: str, *models: str) -> None:
    deployments = root / ".sovereign" / "sites" / site / "deployments"
    deployments.mkdir(parents=True, exist_ok=True)
    for model in models:
        (deployments / f"{model}.json").write_text('{"status": "serving"}')


@dataclass
class Served:
    root: Path
    log: Path
    statuses: list[int]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("evidence")
    factory = FleetFactory(base)
    before = factory({DIRECTIVE_FILE: None}, name="before")
    after = factory(name="after")  # the same fleet plus the signed suspension us-d1
    for site in ("us-1", "eu-1"):
        deploy(before, site, "m-us", "m-open")
    keys = make_keys(base)
    store = open_store(None, before)
    apply_recorded(store, before)
    log = base / "decisions.jsonl"
    settings = GatewaySettings(
        fleet_dir=before,
        reload_interval_s=0.05,
        probe_interval_s=0,
        decision_log=DecisionLogSettings(log, gateway_id="gw-done", boot=""),
    )
    source = AppliedFleetSource(store, lambda files: load_fleet_files(files, "applied"))
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    gateway = Gateway(source, verifier, settings, AccessLog(None))
    app = GatewayApp(gateway)
    url = app.start()
    rng = random.Random(2026)
    countries = ["US", "DE", "FR"]
    statuses: list[int] = []
    try:
        with httpx.Client(trust_env=False, timeout=30) as client:

            def burst() -> None:
                for _ in range(EACH_SIDE):
                    nats = rng.sample(countries, rng.choice((0, 1, 1, 2)))
                    headers = keys.headers(rng.choice(countries), nats)
                    model = rng.choice(("m-us", "m-us", "m-open"))
                    r = client.post(url + CHAT, json={"model": model}, headers=headers)
                    statuses.append(r.status_code)

            burst()
            new = apply_recorded(store, after)
            wait_for(lambda: gateway.serving.table.fleet.digest == new, timeout=30)
            burst()
    finally:
        app.stop()  # flushes the decision log
        store.close()
    yield Served(before, log, statuses)


def evidence(
    capsys: pytest.CaptureFixture[str], root: Path, *logs: Path, extra: tuple[str, ...] = ()
) -> tuple[int, dict[str, Any]]:
    args = ["evidence", "--jurisdiction", "US", *PERIOD, "--fleet", str(root), "--json"]
    for log in logs:
        args += ["--decisions", str(log)]
    code, out, err = run_cli(capsys, *args, *extra)
    return code, json.loads(out)


def test_all_1000_decisions_are_rejudged_lawful(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both sides of the arrival really happened: the suspension refused some requests.
    assert 451 in served.statuses[EACH_SIDE:] and 451 not in served.statuses[:EACH_SIDE]
    code, doc = evidence(capsys, served.root, served.log)
    assert set(doc) == {
        "jurisdiction",
        "from",
        "to",
        "directives",
        "decisions",
        "violations",
        "unparsed",
        "gaps",
        "error",
    } - ({"error"} if code == 0 else set())
    assert (doc["violations"], doc["unparsed"], doc["gaps"]) == ([], [], [])
    assert code == 0
    assert doc["decisions"]["judged"] == 2 * EACH_SIDE
    assert doc["decisions"]["refused"]["total"] == served.statuses.count(451)
    (directive,) = doc["directives"]
    assert directive["id"] == "us-d1" and directive["changed"]["refused"] > 0
    assert [a["kind"] for a in directive["audit"]] == ["directive.added"]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_line_edited_to_claim_a_forbidden_site_is_a_violation(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = _lines(served.log)
    refused = next(
        line
        for line in lines
        if line["result"]["status"] == 451 and line["input"]["model"] == "m-us"
    )
    refused["result"] = {"status": 200, "site": "us-1", "route": ["us-1"]}
    code, doc = evidence(capsys, served.root, _write(tmp_path / "edited.jsonl", lines))
    assert code == 1
    kinds = sorted(v["kind"] for v in doc["violations"])
    assert kinds == ["route_not_lawful", "served_where_forbidden"]
    forbidden = next(v for v in doc["violations"] if v["kind"] == "served_where_forbidden")
    assert forbidden["decision_id"] == refused["decision_id"]
    assert forbidden["law_route"] == []
    assert {"rule": "directive", "ref": "us-d1"}.items() <= forbidden["reasons"][0].items()
    assert doc["gaps"] == [] and doc["unparsed"] == []


def test_a_deleted_line_is_a_gap_and_a_garbled_one_is_listed(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = _lines(served.log)
    gone = lines.pop(617)
    seq = gone["labels"]["seq"]
    path = _write(tmp_path / "cut.jsonl", lines)
    with path.open("a") as f:
        f.write('{"decision_id": "gw-done:99999", "timestamp": "yesterday"}\n')
    code, doc = evidence(capsys, served.root, path)
    assert code == 1
    assert doc["gaps"] == [{"gateway": "gw-done", "from_seq": seq, "to_seq": seq, "missing": 1}]
    (unparsed,) = doc["unparsed"]
    assert unparsed["line"] == len(lines) + 1 and "labels" in unparsed["error"]
    assert doc["violations"] == []


def test_a_decision_judged_by_a_fleet_the_state_never_applied_is_a_violation(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = _lines(served.log)[:3]
    lines[1]["labels"]["fleet"] = "f" * 64
    code, doc = evidence(capsys, served.root, _write(tmp_path / "other.jsonl", lines))
    assert code == 1
    assert [v["kind"] for v in doc["violations"]] == ["fleet_unknown"]


def test_bad_options_say_what_would_be_valid(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_cli(
        capsys,
        "evidence",
        "-j",
        "US",
        "--from",
        "2026-02-01",
        "--to",
        "2026-01-01",
        "--fleet",
        str(served.root),
        "--json",
    )
    assert code == 1 and "--from" in json.loads(out)["error"]["message"]
    code, out, _ = run_cli(
        capsys,
        "evidence",
        "-j",
        "US",
        *PERIOD,
        "--decisions",
        str(tmp_path / "missing*.jsonl"),
        "--fleet",
        str(served.root),
        "--json",
    )
    assert code == 1 and "no such file" in json.loads(out)["error"]["message"]
    code, out, _ = run_cli(
        capsys, "evidence", "-j", "XX", *PERIOD, "--fleet", str(served.root), "--json"
    )
    assert code == 1 and "US" in json.loads(out)["error"]["hint"]


@pytest.mark.browser
def test_the_html_page_lists_every_finding_and_loads_clean_in_chromium(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.cli.test_report import Cells, load_in_browser

    lines = _lines(served.log)
    refused = next(line for line in lines if line["result"]["status"] == 451)
    refused["result"] = {"status": 200, "site": "us-1", "route": []}
    del lines[10]
    path = _write(tmp_path / "both.jsonl", lines)
    with path.open("a") as f:
        f.write("not json <script>alert(1)</script>\n")
    page = tmp_path / "evidence.html"
    code, doc = evidence(capsys, served.root, path, extra=("--html", str(page)))
    assert code == 1
    dom, console = load_in_browser(page)
    assert console == []
    parsed = Cells()
    parsed.feed(dom)
    assert parsed.external == []
    assert parsed.body["data-violations"] == str(len(doc["violations"])) == "1"
    assert parsed.body["data-gaps"] == "1" and parsed.body["data-unparsed"] == "1"
    assert dom.count('<tr class="violation">') == 1
    assert dom.count('<tr class="gap">') == 1 and dom.count('<tr class="unparsed">') == 1
    assert "<script>" not in dom
    assert refused["decision_id"] in dom and "us-d1" in dom


def test_a_copied_line_is_listed_as_a_duplicate(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = _lines(served.log)
    copy = dict(lines[300])
    lines.insert(5, copy)  # the copy is met first: the original, later, is the one listed
    code, doc = evidence(capsys, served.root, _write(tmp_path / "copied.jsonl", lines))
    assert code == 1
    (unparsed,) = doc["unparsed"]
    assert unparsed["line"] == 302 and "more than once" in unparsed["error"]
    assert copy["decision_id"] in unparsed["error"]
    assert doc["violations"] == [] and doc["gaps"] == []
