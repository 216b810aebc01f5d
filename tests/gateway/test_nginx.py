"""REAL nginx in front of ``sovereign authz``, configured by ``sovereign export --format nginx``.

nginx runs as its own process group with a temporary prefix, ``-g 'daemon off;'``, on loopback
ports, and is killed by the fixture. Every site is a recording upstream of this test (so the
test sees exactly which site each request reached, and what it was sent). Checked:

- 200 random principals and models: every request that reaches an upstream reaches a site of
  the law's route (``rules.route``), the first one; every refusal is 451 with authz's
  explanation, byte for byte; unknown models 404;
- failover only along the route; SSE passes through unbuffered; the caller's credential never
  reaches a site; drained routes are 503 ``site_unavailable``;
- authz unreachable: 503, fail closed;
- a directive applied mid-run is enforced by nginx without a reload (same nginx processes),
  as soon as authz's change signal has the new table (the time it took is printed).

nginx-light is a Debian package (``apt-get install -y nginx-light``; ``.ci/setup`` installs it
on a fresh machine): without it this test fails, saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from orchestrator.fleet.loader import load_fleet, load_fleet_files
from orchestrator.gateway.app import GatewaySettings
from orchestrator.gateway.authz import Authz
from orchestrator.gateway.authz_server import AuthzServer
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.proxyconf import nginx_config
from orchestrator.gateway.server import bind
from orchestrator.gateway.sources import AppliedFleetSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.policy import rules
from orchestrator.policy.principal import Principal
from orchestrator.state import StateStore, open_store
from orchestrator.stubs.server import BackgroundServer
from tests.fleet.builder import DIRECTIVE_FILE, FleetFactory
from tests.gateway.support import Keys
from tests.gateway.test_applied import record
from tests.gateway.test_drains import LOCAL_EU2, set_drains

CHAT = "/v1/chat/completions"
SITES = ("eu-1", "eu-2", "us-1")
INSTALL = (
    "nginx is not installed: the proxies' end-to-end test runs real nginx. Install it with "
    "`apt-get install -y nginx-light` (Debian/Ubuntu; .ci/setup does this on a fresh machine)"
)


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.fail(INSTALL)
    return found


@dataclass
class Upstream:
    """One site's model server: records every request it gets; can fail or hold a stream."""

    site: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    failing: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    server: BackgroundServer | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.url.path == "/healthz":
            await JSONResponse({"ok": True})(scope, receive, send)
            return
        body = await request.json()
        self.seen.append(
            {
                "path": request.url.path,
                "model": body.get("model"),
                "header_model": request.headers.get("x-sovereign-model"),
                "authorization": request.headers.get("authorization"),
                "route": request.headers.get("x-sovereign-route"),
            }
        )
        response: Response
        if self.failing:
            response = JSONResponse({"error": "down"}, status_code=503)
        elif body.get("stream"):
            release = self.release

            async def events() -> Any:
                yield f'data: {{"site": "{self.site}", "n": 1}}\n\n'.encode()
                await asyncio.to_thread(release.wait, 30)
                yield f'data: {{"site": "{self.site}", "n": 2}}\n\ndata: [DONE]\n\n'.encode()

            response = StreamingResponse(events(), media_type="text/event-stream")
        else:
            response = JSONResponse({"site": self.site, "model": body.get("model")})
        await response(scope, receive, send)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not listen in time")


@contextmanager
def running_nginx(config: str, prefix: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground, its own process group, a tmp prefix; killed at the end."""
    binary = nginx_binary()
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(config)
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=(prefix / "logs" / "stderr.log").open("wb"),
        start_new_session=True,
    )
    try:
        wait_listening(port, proc)
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def workers_of(master: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True, check=False
    )
    return {int(p) for p in out.stdout.split()}


@dataclass
class Stack:
    url: str
    authz: Authz
    authz_app: AuthzServer
    store: StateStore
    upstreams: dict[str, Upstream]
    nginx: subprocess.Popen[bytes]
    root: Path


@pytest.fixture
def stack(keys: Keys, signed_fleet_factory: FleetFactory, tmp_path: Path) -> Iterator[Stack]:
    nginx_binary()
    root = signed_fleet_factory({DIRECTIVE_FILE: None}, mutate=LOCAL_EU2, name="before")
    store = open_store(None, root)
    record(store, root)
    upstreams = {s: Upstream(s) for s in SITES}
    for up in upstreams.values():
        up.server = BackgroundServer(up, name=f"site-{up.site}")
        up.server.start()
    source = AppliedFleetSource(store, lambda files: load_fleet_files(files, "applied"))
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    settings = GatewaySettings(
        fleet_dir=root,
        probe_interval_s=0,
        upstream_overrides={s: up.server.url for s, up in upstreams.items() if up.server},
    )
    authz = Authz(source, verifier, settings, AccessLog(lambda line: None))
    authz_app = AuthzServer(authz, bind("127.0.0.1", 0))  # what `sovereign authz` runs
    authz_url = authz_app.start()
    port = free_port()
    # nginx's upstream blocks (kept-alive connections) come from the sites' endpoints: here
    # the recording servers authz names (its upstream overrides).
    fleet = load_fleet(root)
    urls = settings.upstream_overrides
    fleet = replace(fleet, sites={s: replace(v, endpoint=urls[s]) for s, v in fleet.sites.items()})
    config = nginx_config(
        fleet,
        authz=authz_url.removeprefix("http://"),
        listen=f"127.0.0.1:{port}",
        worker_processes="1",
        pid=str(tmp_path / "nginx" / "nginx.pid"),
    )
    try:
        with running_nginx(config, tmp_path / "nginx", port) as proc:
            yield Stack(f"http://127.0.0.1:{port}", authz, authz_app, store, upstreams, proc, root)
    finally:
        authz_app.stop()
        for up in upstreams.values():
            up.release.set()
            if up.server is not None:
                up.server.stop()
        store.close()


def ask(
    client: httpx.Client, url: str, keys: Keys, who: tuple[str, list[str]], model: str
) -> httpx.Response:
    return client.post(
        url + CHAT,
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={**keys.headers(*who), "X-Sovereign-Model": model},
    )


def direct(client: httpx.Client, stack: Stack, keys: Keys, who: Any, model: str) -> httpx.Response:
    """authz's own answer to the same question (as Envoy would get it)."""
    return client.post(
        stack.authz_app.url + "/check",
        headers={**keys.headers(*who), "X-Sovereign-Model": model},
    )


def test_200_random_principals_reach_only_sites_of_the_route(
    stack: Stack, keys: Keys, client: httpx.Client
) -> None:
    rng = random.Random(22)
    fleet = stack.authz.serving.table.fleet
    countries = ["US", "DE", "FR", "JP", "BR"]
    nationalities = ["US", "DE", "FR", "CN"]
    reached = refused = 0
    for _ in range(200):
        residency = rng.choice(countries)
        nats = rng.sample(nationalities, rng.randint(0, 2))
        model = rng.choice(["m-us", "m-open", "m-us", "m-open", "gpt-9"])
        before = {s: len(up.seen) for s, up in stack.upstreams.items()}
        r = ask(client, stack.url, keys, (residency, nats), model)
        hit = [s for s, up in stack.upstreams.items() if len(up.seen) > before[s]]
        if model not in fleet.models:
            assert r.status_code == 404 and hit == []
            continue
        legal = rules.route(fleet, model, Principal.of(residency, nats, []), datetime.now(UTC))
        if legal:
            reached += 1
            assert r.status_code == 200, r.text
            assert hit == [legal[0]] and r.json()["site"] == legal[0]
            assert r.headers["x-sovereign-route"] == ",".join(legal)
            seen = stack.upstreams[legal[0]].seen[-1]
            assert seen["authorization"] is None  # the credential stays at the proxy
            assert seen["header_model"] == model == seen["model"]
        else:
            refused += 1
            assert hit == []
            assert r.status_code == 451
            assert r.content == direct(client, stack, keys, (residency, nats), model).content
            assert r.json()["error"]["type"] == "unavailable_for_legal_reasons"
            assert r.json()["explanation"]["route"] == []
    assert reached > 20 and refused > 20  # both sides were exercised


def test_failover_only_along_the_route_streams_and_drains(
    stack: Stack, keys: Keys, client: httpx.Client
) -> None:
    german = ("DE", ["DE"])
    # eu-1 answers 503: nginx tries eu-2 (the next site of the route), never us-1
    stack.upstreams["eu-1"].failing = True
    r = ask(client, stack.url, keys, german, "m-open")
    assert r.status_code == 200 and r.json()["site"] == "eu-2"
    assert stack.upstreams["us-1"].seen == []
    # both EU sites fail: 502, and still never a site outside the route
    stack.upstreams["eu-2"].failing = True
    r = ask(client, stack.url, keys, german, "m-open")
    assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_unavailable"
    assert stack.upstreams["us-1"].seen == []
    stack.upstreams["eu-1"].failing = stack.upstreams["eu-2"].failing = False
    # SSE: the first event reaches the client while the upstream still holds the second
    with client.stream(
        "POST",
        stack.url + CHAT,
        json={"model": "m-open", "stream": True},
        headers={**keys.headers(*german), "X-Sovereign-Model": "m-open"},
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        chunks = stream.iter_bytes()
        first = next(chunks)
        assert b'"n": 1' in first and b'"n": 2' not in first
        stack.upstreams["eu-1"].release.set()
        rest = b"".join(chunks)
        assert b'"n": 2' in rest and rest.endswith(b"data: [DONE]\n\n")
    # every EU site drained: an outage, 503 site_unavailable naming them, relayed unchanged
    set_drains(stack.store, "eu-1", "eu-2")
    deadline = time.monotonic() + 10
    while (r := ask(client, stack.url, keys, german, "m-open")).status_code != 503:
        assert r.status_code == 200 and time.monotonic() < deadline
    error = r.json()["error"]
    assert error["type"] == "site_unavailable" and error["sites"] == ["eu-1", "eu-2"]
    assert r.content == direct(client, stack, keys, german, "m-open").content
    set_drains(stack.store)


def test_a_directive_reaches_nginx_without_a_reload(
    stack: Stack, keys: Keys, signed_fleet_factory: FleetFactory, client: httpx.Client
) -> None:
    after = signed_fleet_factory(mutate=LOCAL_EU2, name="after")  # + the signed suspension
    german_in_us = ("US", ["DE"])
    assert ask(client, stack.url, keys, german_in_us, "m-us").status_code == 200
    workers = workers_of(stack.nginx.pid)
    old = stack.authz.serving.table.version
    applied_at = time.monotonic()
    record(stack.store, after)
    # Poll through nginx until the refusal shows; every answer until then is the old table's.
    while True:
        r = ask(client, stack.url, keys, german_in_us, "m-us")
        if r.status_code == 451:
            break
        assert r.status_code == 200 and r.headers["x-sovereign-table"] == old
        assert time.monotonic() - applied_at < 30, "the directive never reached nginx"
    elapsed_ms = (time.monotonic() - applied_at) * 1000
    print(f"\ndirective enforced by nginx {elapsed_ms:.1f} ms after the apply was recorded")
    assert r.headers["x-sovereign-table"] == stack.authz.serving.table.version != old
    reasons = r.json()["explanation"]["sites"]["us-1"]["reasons"]
    assert [x["ref"] for x in reasons if x["rule"] == "directive"] == ["us-d1"]
    for _ in range(20):  # and from then on, always
        assert ask(client, stack.url, keys, german_in_us, "m-us").status_code == 451
    # the same nginx processes: no reload, no restart
    assert stack.nginx.poll() is None and workers_of(stack.nginx.pid) == workers


def test_authz_unreachable_is_a_refusal(stack: Stack, keys: Keys, client: httpx.Client) -> None:
    german = ("DE", ["DE"])
    assert ask(client, stack.url, keys, german, "m-open").status_code == 200
    stack.authz_app.stop()
    for _ in range(5):
        r = ask(client, stack.url, keys, german, "m-open")
        assert r.status_code == 503 and r.json()["error"]["type"] == "authz_unavailable"
    assert [len(stack.upstreams[s].seen) for s in SITES] == [1, 0, 0]  # nothing got through


def test_the_exported_file_is_what_the_cli_writes(tmp_path: Path) -> None:
    regions = Path(__file__).resolve().parents[2] / "regions"
    out = tmp_path / "nginx.conf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "export",
            "--format",
            "nginx",
            "--fleet",
            str(regions),
            "--authz",
            "127.0.0.1:9191",
            "--resolver",
            "127.0.0.53",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text == nginx_config(
        load_fleet(regions), "127.0.0.1:9191", "127.0.0.1:8080", "127.0.0.53"
    )
    (tmp_path / "logs").mkdir()
    check = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    json.dumps(text)  # plain text, nothing binary
