"""The decision log: one line per model request, off the request path, fail closed when full.

Unit tests drive ``DecisionLog`` directly (reserve/commit, rotation, refuse and drop); the
gateway tests send real requests over HTTP and read the file the writer thread wrote.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx

from orchestrator.gateway.decisionlog import (
    DecisionLog,
    DecisionLogSettings,
    DecisionRecord,
    worker_path,
)
from orchestrator.policy.principal import Principal
from tests.gateway.support import Keys, running_gateway, wait_for

CHAT = "/v1/chat/completions"
AT = datetime(2026, 6, 12, 10, 0, tzinfo=UTC)


def _record(status: int = 200) -> DecisionRecord:
    r = DecisionRecord(AT, CHAT, "f" * 64, "t" * 16, 3)
    r.status, r.model, r.site = status, "fable-5", "us-east"
    r.principal = Principal.of("US", ["FR"], ["staff"])
    r.route = ("us-east", "us-west")
    return r


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_line_has_the_documented_shape_and_no_secrets(tmp_path: Path) -> None:
    log = DecisionLog(DecisionLogSettings(tmp_path / "d.jsonl", gateway_id="gw-1", boot=""))
    ticket = log.reserve()
    assert ticket is not None
    log.commit(ticket, _record())
    log.close()
    (line,) = _lines(tmp_path / "d.jsonl")
    assert line == {
        "decision_id": "gw-1:1",
        "timestamp": "2026-06-12T10:00:00.000000Z",
        "input": {
            "path": CHAT,
            "model": "fable-5",
            "residency": "US",
            "nationalities": ["FR"],
            "groups": ["staff"],
            "caller": None,
        },
        "result": {"status": 200, "site": "us-east", "route": ["us-east", "us-west"]},
        "labels": {"gateway": "gw-1", "seq": 1, "fleet": "f" * 64, "table": "t" * 16, "serial": 3},
    }


def test_full_log_refuses_by_default_and_takes_requests_again_once_written(
    tmp_path: Path,
) -> None:
    log = DecisionLog(DecisionLogSettings(tmp_path / "d.jsonl", "gw", queue_size=2, boot=""))
    first, second = log.reserve(), log.reserve()
    assert first is not None and second is not None
    assert log.reserve() is None  # both places are taken by decisions not yet committed
    assert log.refused == 1
    log.commit(first, _record())
    wait_for(lambda: log.reserve() is not None)
    log.close()
    assert [line["decision_id"] for line in _lines(tmp_path / "d.jsonl")] == ["gw:1"]


def test_drop_mode_serves_and_leaves_a_gap(tmp_path: Path) -> None:
    log = DecisionLog(
        DecisionLogSettings(tmp_path / "d.jsonl", "gw", queue_size=1, when_full="drop", boot="")
    )
    kept = log.reserve()
    dropped = log.reserve()
    assert kept is not None and dropped is not None and not dropped.logged
    log.commit(dropped, _record())
    log.commit(kept, _record())
    wait_for(lambda: log.written == 1)
    log.close()
    assert [line["decision_id"] for line in _lines(tmp_path / "d.jsonl")] == ["gw:1"]
    assert log.dropped == 1  # seq 2 was never written: evidence reports the gap


def test_rotation_by_size_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(DecisionLogSettings(path, "gw", max_bytes=2048, boot=""))
    for _ in range(40):
        ticket = log.reserve()
        assert ticket is not None
        log.commit(ticket, _record())
    log.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) > 2 and path in files
    seqs = sorted(
        int(str(line["decision_id"]).rsplit(":", 1)[1]) for f in files for line in _lines(f)
    )
    assert seqs == list(range(1, 41))
    assert all(f.stat().st_size <= 2048 for f in files)


def test_worker_files_and_ids_are_their_own(tmp_path: Path) -> None:
    s = DecisionLogSettings(tmp_path / "d.jsonl", "gw").for_worker(2)
    assert s.path == worker_path(tmp_path / "d.jsonl", 2) == tmp_path / "d.jsonl.w2"
    assert s.gateway_id == "gw.w2"


def test_the_gateway_logs_every_request_served_refused_and_unauthenticated(
    keys: Keys, tmp_path: Path
) -> None:
    path = tmp_path / "decisions.jsonl"
    settings = DecisionLogSettings(path, gateway_id="gw-test", boot="")
    with running_gateway(keys, decision_log=settings) as gw, httpx.Client(trust_env=False) as c:
        body = {"model": "fable-5", "messages": [{"role": "user", "content": "SECRET PROMPT"}]}
        token = keys.token("US", ["US"])
        served = c.post(gw.url + CHAT, json=body, headers={"Authorization": f"Bearer {token}"})
        refused = c.post(gw.url + CHAT, json=body, headers=keys.headers("US", ["FR"]))
        anonymous = c.post(gw.url + CHAT, json=body)
        assert (served.status_code, refused.status_code, anonymous.status_code) == (200, 451, 401)
        decisions = gw.gateway.decisions
        assert decisions is not None
        wait_for(lambda: decisions.written == 3)
    text = path.read_text()
    assert "SECRET PROMPT" not in text and token not in text and "alice" not in text
    lines = sorted(_lines(path), key=lambda line: line["labels"]["seq"])  # type: ignore[index]
    assert [line["decision_id"] for line in lines] == ["gw-test:1", "gw-test:2", "gw-test:3"]
    by_status = {line["result"]["status"]: line for line in lines}  # type: ignore[index]
    ok = by_status[200]
    assert ok["result"]["site"] == served.headers["x-sovereign-site"]  # type: ignore[index]
    assert ok["input"]["nationalities"] == ["US"]  # type: ignore[index]
    assert ok["input"]["caller"]["kind"] == "token"  # type: ignore[index]
    assert ok["labels"]["table"] == served.headers["x-sovereign-table"]  # type: ignore[index]
    no = by_status[451]
    assert no["result"] == {"status": 451, "site": None, "route": []}
    assert {"rule": "directive", "ref": "us-doc"} in no["reasons"]  # type: ignore[operator]
    assert by_status[401]["input"]["residency"] is None  # type: ignore[index]


def test_a_full_log_answers_503_and_serves_nothing(keys: Keys, tmp_path: Path) -> None:
    settings = DecisionLogSettings(tmp_path / "d.jsonl", "gw", queue_size=1)
    with running_gateway(keys, decision_log=settings) as gw, httpx.Client(trust_env=False) as c:
        decisions = gw.gateway.decisions
        assert decisions is not None
        held = decisions.reserve()  # the one place is taken: the next request cannot be logged
        assert held is not None
        before = sum(gw.hits().values())
        r = c.post(
            gw.url + CHAT, json={"model": "olmo-3", "messages": []}, headers=keys.headers("US")
        )
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "decision_log_unavailable"
        assert sum(gw.hits().values()) == before


def test_authz_logs_its_decisions_too(keys: Keys, tmp_path: Path) -> None:
    from orchestrator.gateway.app import GatewaySettings
    from orchestrator.gateway.authz import Authz
    from orchestrator.gateway.metrics import AccessLog
    from orchestrator.gateway.server import GatewayApp
    from orchestrator.gateway.sources import StaticSource
    from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
    from tests.gateway.support import make_fleet

    path = tmp_path / "authz.jsonl"
    authz = Authz(
        StaticSource(make_fleet()),
        TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience, keys.issuer),
        GatewaySettings(
            reload_interval_s=0.05,
            probe_interval_s=0,
            stub_all_sites=True,
            decision_log=DecisionLogSettings(path, gateway_id="authz-1", boot=""),
        ),
        AccessLog(None),
    )
    app = GatewayApp(authz)
    url = app.start()
    try:
        with httpx.Client(trust_env=False, timeout=10) as c:
            ok = c.post(
                url + "/check",
                headers={**keys.headers("US", ["US"]), "X-Sovereign-Model": "fable-5"},
            )
            no = c.post(
                url + "/check",
                headers={**keys.headers("US", ["FR"]), "X-Sovereign-Model": "fable-5"},
            )
        assert (ok.status_code, no.status_code) == (200, 451)
    finally:
        app.stop()
    lines = sorted(_lines(path), key=lambda line: line["labels"]["seq"])  # type: ignore[index]
    assert [line["decision_id"] for line in lines] == ["authz-1:1", "authz-1:2"]
    assert lines[0]["result"]["site"] == ok.headers["x-sovereign-site"]  # type: ignore[index]
    assert lines[0]["input"]["path"] == "authz"  # type: ignore[index]
    assert lines[1]["result"]["status"] == 451 and lines[1]["reasons"]  # type: ignore[index]


def test_each_worker_spec_has_its_own_log_and_the_supervisor_opens_none(tmp_path: Path) -> None:
    from orchestrator.gateway.app import GatewaySettings
    from orchestrator.gateway.launch import AuthzSpec

    spec = AuthzSpec(
        fleet=tmp_path,
        state=None,
        token_keys=(),
        token_audience="sovereign",
        token_issuer=None,
        serve_working_fleet=False,
        settings=GatewaySettings(decision_log=DecisionLogSettings(tmp_path / "d.jsonl", "gw")),
    )
    worker = spec.for_worker(1)
    assert isinstance(worker, AuthzSpec)
    assert worker.settings.decision_log is not None
    assert worker.settings.decision_log.path == tmp_path / "d.jsonl.w1"
    assert worker.settings.decision_log.gateway_id == "gw.w1"
    assert spec.without_decision_log().settings.decision_log is None


def test_a_restart_counts_again_under_an_id_of_its_own(tmp_path: Path) -> None:
    settings = DecisionLogSettings(tmp_path / "d.jsonl", "gw-us-1")  # the same --gateway-id
    ids = []
    for _ in range(2):  # two runs of one gateway, appending to one file
        log = DecisionLog(settings)
        ticket = log.reserve()
        assert ticket is not None
        log.commit(ticket, _record())
        log.close()
        ids.append(log.gateway_id)
    assert ids[0] != ids[1] and all(i.startswith("gw-us-1.") for i in ids)
    lines = _lines(tmp_path / "d.jsonl")
    assert [line["decision_id"] for line in lines] == [f"{ids[0]}:1", f"{ids[1]}:1"]
