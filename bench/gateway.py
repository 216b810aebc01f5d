"""Gateway benchmark: Sovereign's gateway beside the LiteLLM proxy and nginx, on one stub.

Prints figures; it is not a test. Everything runs on loopback, each server in its own process:
a stub upstream (``--serve-stub``), then, in front of that same stub,
- ``sovereign gateway`` (the real command, serving an applied fleet from a SQLite state);
- the LiteLLM proxy (pinned in the ``bench`` extra), one deployment of the model with
  ``region_name: us``, ``enable_pre_call_checks`` and ``allowed_model_region: us`` in each
  request body: the region filter closest to our routing (no auth, no nationality, no
  directives: it decides less than the gateway);
- nginx ``proxy_pass`` with upstream keep-alive (Debian's nginx-light), the floor: a C proxy
  that decides nothing;
- nginx + ``sovereign authz`` (``nginx+authz``): nginx configured by ``sovereign export
  --format nginx``, asking a real ``sovereign authz`` process before every request (its CPU
  counts both processes); then ``authz`` alone: decisions per second of one process (closed
  loop) and the decision's p99 at an offered 5,000 decisions/s (open loop, ``--authz-rate``);
and this process generates load with a minimal keep-alive HTTP/1.1 client. Peers that are not
installed are skipped with the reason (``make bench-peers`` installs both).

Measured for each: added latency p50/p99 over the stub answered directly at the same offered
rate (open loop, 200, 500 and 1,000 req/s by default; latency counted from the *scheduled* send
time, so queueing is not hidden), the most requests per second at a fixed concurrency (closed
loop), and CPU per request of the proxy's processes (Linux /proc, user + system). Then
``sovereign gateway --workers 2`` against one worker; an API key of an attested tenant against a
token (the authenticator in-process, and the gateway's CPU per request); and
directive-to-enforcement: a suspend
is recorded as ``sovereign apply`` records it and the first 451 is timed at three gateway
processes at once (the apply's change signal against the old 0.5 s poll).

    .venv/bin/python bench/gateway.py [--rate 200,500,1000] [--duration 5] [--concurrency 16]
        [--rounds 5] [--peers sovereign,litellm,nginx,nginx+authz] [--authz-rate 5000]
        [--profile gateway.prof]

The load generator and the stub run on uvloop when it is installed (they are measuring
instruments: the less CPU they take from the shared cores, the less they disturb the proxy),
and the bench reports the generator's own CPU per request so that a saturated generator shows.
``--profile FILE`` runs the gateway under cProfile and writes its stats to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.fleet.loader import read_fleet_files  # noqa: E402
from orchestrator.fleet.signing import (  # noqa: E402
    generate_key,
    public_key_of,
    sign_file_bytes,
    write_signature,
)
from orchestrator.gateway.devtokens import generate_dev_key, mint_token  # noqa: E402
from orchestrator.state import open_store  # noqa: E402
from orchestrator.state.apikeys import ApiKey, key_digest, new_key  # noqa: E402

T = TypeVar("T")
CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}).encode()
# Requests to LiteLLM authenticate with its master key (it refuses to start without one), as
# requests to the gateway carry a signed token.
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 3
# LiteLLM's region filter reads allowed_model_region from the request (a virtual key's setting
# in its proxy, which needs a database; in the body it reaches the router the same way).
LITELLM_BODY = json.dumps(
    {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "allowed_model_region": "us"}
).encode()
LITELLM_CONFIG = """\
model_list:
  - model_name: m1
    litellm_params:
      model: openai/m1
      api_base: {stub}/v1
      api_key: unused
      region_name: us
router_settings:
  enable_pre_call_checks: true
general_settings:
  master_key: {master_key}
litellm_settings:
  telemetry: false
  drop_params: true
"""
NGINX_CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log {work}/nginx-access.log;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  upstream stub {{ server 127.0.0.1:{stub_port}; keepalive 64; }}
  keepalive_requests 1000000;  # the load generator keeps its connections for the whole run
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://stub;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""

PROFILE = """\
jurisdiction: US
name: United States
countries: [US]
authorities:
  - id: us-gov
    public_key: "{public}"
directive_threshold: 1
residency:
  process_in: [US]
models: [m1]
sites:
  - id: us-1
    provider: local
    region: local-us
    country: US
    operator: op-us
    endpoint: {endpoint}
failover: [us-1]
"""
MODELS = """\
models:
  - id: m1
    origin: US
    export_control: restricted
    artifact: s3://bench/m1/
"""
DIRECTIVE = """\
id: {id}
jurisdiction: US
issuer: us-gov
reference: "bench suspension"
action: suspend
models: [m1]
audience:
  nationality_not_in: [US]
effective: 2026-01-01T00:00:00Z
expires: null
supersedes: null
"""


# -- the stub upstream process -------------------------------------------------------------


def serve_stub(port_file: Path) -> None:
    import uvicorn

    from orchestrator.stubs.upstream import build_stub_app

    # IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (see server.bind).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port_file.write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(
        build_stub_app("us-1"), log_level="warning", access_log=False, loop="auto", http="auto"
    )  # uvloop and httptools when installed
    uvicorn.Server(config).run(sockets=[sock])


# -- a minimal HTTP/1.1 keep-alive client ----------------------------------------------------


class Pool:
    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self._free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        for _ in range(self.size):
            self._free.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def close(self) -> None:
        while not self._free.empty():
            _, writer = self._free.get_nowait()
            writer.close()

    async def post(self, request: bytes) -> int:
        """The status, or 0 when the connection broke (it is replaced by a new one)."""
        reader, writer = await self._free.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            return status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.close()
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return 0
        finally:
            self._free.put_nowait((reader, writer))


def request_bytes(
    host: str, port: int, token: str, body: bytes = BODY, extra: str = "", method: str = "POST"
) -> bytes:
    return (
        f"{method} {CHAT} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


MODEL_HEADER = "X-Sovereign-Model: m1\r\n"  # what a client of nginx + authz sends


@dataclass
class Result:
    latencies_ms: list[float]
    errors: int
    seconds: float

    def pct(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(round(p / 100 * (len(data) - 1))))]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds


async def open_loop(host: str, port: int, request: bytes, rate: int, duration: float) -> Result:
    pool = Pool(host, port, 64)
    await pool.open()
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        status = await pool.post(request)
        if status != 200:
            errors += 1
        latencies.append((time.perf_counter() - scheduled) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * duration)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    # A proxy far behind the offered rate would take minutes to drain its queue: what is not
    # answered within the grace period counts as an error (and its latency is not known).
    done, pending = await asyncio.wait(tasks, timeout=duration * 2 + 5)
    for task in pending:
        task.cancel()
    errors += len(pending)
    elapsed = time.perf_counter() - start
    await pool.close()
    return Result(latencies, errors, elapsed)


async def closed_loop(
    host: str, port: int, request: bytes, concurrency: int, duration: float
) -> Result:
    pool = Pool(host, port, concurrency)
    await pool.open()
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            if await pool.post(request) != 200:
                errors += 1
            latencies.append((time.perf_counter() - sent) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await pool.close()
    return Result(latencies, errors, elapsed)


# -- setup -----------------------------------------------------------------------------------


def write_fleet(root: Path, stub_url: str, public_key: str, attestor_pem: bytes) -> None:
    (root / "directives").mkdir(parents=True)
    (root / "us.yaml").write_text(PROFILE.format(public=public_key, endpoint=stub_url))
    (root / "models.yaml").write_text(MODELS)
    # A tenant judged as the token's principal (US, [US]): key and token route alike.
    (root / "fleet.yaml").write_text(
        "unlisted_countries: deny\nattestors:\n  - id: bench-notary\n"
        f'    public_key: "{public_key_of(attestor_pem)}"\n'
    )
    (root / "tenants").mkdir()
    tenant = root / "tenants" / "bench.yaml"
    tenant.write_text(
        "id: bench\nattested_by: bench-notary\nreference: bench\n"
        "principal: {residency: US, nationalities: [US]}\nexpires: 2099-01-01T00:00:00Z\n"
    )
    write_signature(tenant, "bench-notary", sign_file_bytes(attestor_pem, tenant.read_bytes()))


def create_key(store: Any, tenant: str) -> str:
    """An API key of ``tenant`` recorded as ``sovereign key create`` records it."""
    key_id, key = new_key()
    record = ApiKey(key_id, key_digest(key).hex(), tenant, "bench", "bench", datetime.now(UTC))
    current = store.api_keys()
    store.replace_api_keys(
        (*current.entries, record),
        expected_version=current.version,
        audit_kind="key.created",
        audit_payload={"id": key_id, "tenant": tenant, "by": "bench"},
    )
    return key


def authenticate_cost(key_file: Path, token_text: str, api_key: str, root: Path) -> None:
    """In-process: the authenticator's own cost per call, a remembered token against a key."""
    from orchestrator.fleet.loader import load_fleet
    from orchestrator.gateway.authn import Authenticator, KeyBook
    from orchestrator.gateway.tokens import TokenVerifier, load_token_keys

    store = open_store(None, root, create=False)
    book = KeyBook()
    book.install(load_fleet(root).tenants, store.api_keys())
    store.close()
    authn = Authenticator(TokenVerifier(load_token_keys([key_file])), book)
    by_token = f"Bearer {token_text}".encode()
    by_key = f"Bearer {api_key}".encode()
    assert authn.authenticate(by_token).principal == authn.authenticate(by_key).principal
    n = 200_000
    token_s = min(timeit.repeat(lambda: authn.authenticate(by_token), number=n, repeat=5)) / n
    key_s = min(timeit.repeat(lambda: authn.authenticate(by_key), number=n, repeat=5)) / n
    print(
        f"authenticate() in-process (best of 5 x {n:,}): remembered token "
        f"{token_s * 1e6:.2f} us, API key {key_s * 1e6:.2f} us ({key_s / token_s:.2f}x)"
    )


def add_directive(root: Path, directive_id: str, private_pem: bytes) -> Path:
    path = root / "directives" / f"{directive_id}.yaml"
    path.write_text(DIRECTIVE.format(id=directive_id))
    write_signature(path, "us-gov", sign_file_bytes(private_pem, path.read_bytes()))
    return path


def token(private_pem: bytes, residency: str, nationalities: list[str]) -> str:
    """A token as `sovereign token mint` makes it (``gateway.devtokens``)."""
    return mint_token(
        private_pem, residency=residency, nationalities=nationalities, subject="bench"
    )


def wait_port_file(path: Path) -> int:
    deadline = time.monotonic() + 20
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise SystemExit("the stub upstream did not start")
        time.sleep(0.05)
    return int(path.read_text())


async def time_until(host: str, port: int, request: bytes, want: int, limit: float) -> float:
    pool = Pool(host, port, 1)
    await pool.open()
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < limit:
            if await pool.post(request) == want:
                return time.perf_counter() - start
            await asyncio.sleep(0.002)
        return float("inf")
    finally:
        await pool.close()


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), or NaN elsewhere."""
    return sum(cpu_split(pid))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one load phase, on uvloop when it is installed (cheaper for the generator)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def machine() -> str:
    per_loop = min(timeit.repeat("sum(range(10000))", number=200, repeat=3)) / 200 * 1e6
    load = os.getloadavg()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {load[0]:.1f}; "
        f"calibration sum(range(10000)) = {per_loop:.0f} us (a 2024 laptop: ~100 us)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc), for CPU of multi-process servers."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return out


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


async def wait_http(port: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return True
    return False


@dataclass
class Peer:
    name: str
    proc: subprocess.Popen[str]
    port: int
    request: bytes
    also: tuple[subprocess.Popen[str], ...] = ()  # processes it needs (nginx+authz: authz)

    def pids(self) -> list[int]:
        return [p for proc in (self.proc, *self.also) for p in process_tree(proc.pid)]


def start_authz(root: Path, key_file: Path, log: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "authz", "--fleet", str(root)]
        + ["--port", "0", "--token-key", str(key_file), "--probe-interval", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"sovereign authz did not start: {log.read_text()[-2000:]}")
    return proc, int(json.loads(line)["url"].rsplit(":", 1)[1])


def start_nginx_authz(
    work: Path, root: Path, authz_port: int
) -> tuple[subprocess.Popen[str] | None, int, str]:
    """nginx as ``sovereign export --format nginx`` writes it, in front of authz."""
    from orchestrator.fleet.loader import load_fleet
    from orchestrator.gateway.proxyconf import nginx_config

    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None, 0, "nginx not installed (make bench-peers: apt-get install nginx-light)"
    port = free_port()
    prefix = work / "nginx-authz"
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    text = nginx_config(
        load_fleet(root), f"127.0.0.1:{authz_port}", f"127.0.0.1:{port}", worker_processes="1"
    )
    # the generator keeps its connections for the whole run (as for plain nginx)
    conf.write_text(
        text.replace(
            "    server_tokens off;", "    server_tokens off;\n    keepalive_requests 1000000;"
        )
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off; master_process off;"],
        stdout=subprocess.DEVNULL,
        stderr=open(prefix / "nginx.stderr", "w"),
        text=True,
    )
    if not run(wait_http(port, 20)) or proc.poll() is not None:
        proc.kill()
        return None, 0, f"nginx did not start: {(prefix / 'nginx.stderr').read_text()[-200:]}"
    return proc, port, ""


def start_sovereign(
    root: Path, key_file: Path, log: Path, workers: int = 1, profile: Path | None = None
) -> tuple[subprocess.Popen[str], int]:
    prof = ["-m", "cProfile", "-o", str(profile.resolve())] if profile else []
    proc = subprocess.Popen(
        [sys.executable, *prof, "-m", "orchestrator", "gateway", "--fleet", str(root)]
        + ["--port", "0", "--token-key", str(key_file), "--probe-interval", "0", "--json"]
        + ["--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"sovereign gateway did not start: {log.read_text()[-2000:]}")
    return proc, int(json.loads(line)["url"].rsplit(":", 1)[1])


def start_litellm(work: Path, stub_port: int) -> tuple[subprocess.Popen[str] | None, int, str]:
    """The LiteLLM proxy in front of the stub, or (None, 0, why it is skipped)."""
    import importlib.util

    cli = Path(sys.executable).parent / "litellm"
    if importlib.util.find_spec("litellm") is None or not cli.exists():
        return None, 0, "litellm not installed (make bench-peers)"
    config = work / "litellm.yaml"
    config.write_text(
        LITELLM_CONFIG.format(stub=f"http://127.0.0.1:{stub_port}", master_key=LITELLM_KEY)
    )
    port = free_port()
    log = work / "litellm.log"
    proc = subprocess.Popen(
        [str(cli), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        + ["--num_workers", "1"],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch from the network at start-up
            "LITELLM_LOG": "ERROR",
        },
    )
    if not run(wait_http(port, 180)) or proc.poll() is not None:
        proc.kill()
        tail = log.read_text()[-300:].strip().splitlines()
        return None, 0, f"litellm proxy did not start: {tail[-1] if tail else 'no output'}"
    return proc, port, ""


def start_nginx(work: Path, stub_port: int) -> tuple[subprocess.Popen[str] | None, int, str]:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None, 0, "nginx not installed (make bench-peers: apt-get install nginx-light)"
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONFIG.format(work=work, stub_port=stub_port, port=port))
    proc = subprocess.Popen(
        [nginx, "-p", str(work), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "nginx.stderr", "w"),
        text=True,
    )
    if not run(wait_http(port, 20)) or proc.poll() is not None:
        proc.kill()
        return None, 0, f"nginx did not start: {(work / 'nginx.stderr').read_text()[-200:]}"
    return proc, port, ""


async def enforcement_round(
    ports: list[int], request_of: dict[int, bytes], record: Any, want: int, limit: float
) -> list[float]:
    """Record a new applied fleet, then time the first ``want`` at every gateway at once."""
    pools = {port: Pool("127.0.0.1", port, 1) for port in ports}
    for pool in pools.values():
        await pool.open()
    await asyncio.to_thread(record)
    start = time.perf_counter()

    async def first(port: int) -> float:
        while time.perf_counter() - start < limit:
            if await pools[port].post(request_of[port]) == want:
                return time.perf_counter() - start
            await asyncio.sleep(0.001)
        return float("inf")

    try:
        return list(await asyncio.gather(*(first(p) for p in ports)))
    finally:
        for pool in pools.values():
            await pool.close()


def decision_buckets(port: int) -> dict[float, float]:
    """authz's ``sovereign_gateway_decision_seconds`` histogram: upper bound -> count."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("sovereign_gateway_decision_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return out


def bucket_quantile(after: dict[float, float], before: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile of what was observed between."""
    counts = sorted((b, after[b] - before.get(b, 0.0)) for b in after)
    total = counts[-1][1] if counts else 0.0
    for bound, cumulative in counts:
        if total and cumulative >= q * total:
            return bound
    return float("nan")


def fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate",
        default="200,500,1000",
        help="offered requests per second, comma-separated for several runs",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="enforcement measurements")
    parser.add_argument(
        "--peers", default="sovereign,litellm,nginx,nginx+authz", help="which proxies"
    )
    parser.add_argument(
        "--authz-rate", type=int, default=5000, help="offered decisions/s for authz alone (0: off)"
    )
    parser.add_argument(
        "--phases",
        default="open,closed,workers,enforcement,keys",
        help="which measurements (closed is always run: the side-by-side needs it)",
    )
    parser.add_argument(
        "--profile", type=Path, help="run the gateway under cProfile and write its stats here"
    )
    parser.add_argument("--serve-stub", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        serve_stub(args.serve_stub)
        return

    rates = [int(r) for r in str(args.rate).split(",") if r.strip()]
    wanted = [p.strip() for p in str(args.peers).split(",") if p.strip()]
    phases = {p.strip() for p in str(args.phases).split(",") if p.strip()}
    if "open" not in phases:
        rates = []
    work = Path(tempfile.mkdtemp(prefix="sovereign-bench-"))
    port_file = work / "stub.port"
    stub = subprocess.Popen([sys.executable, __file__, "--serve-stub", str(port_file)])
    started: list[subprocess.Popen[str]] = []
    try:
        stub_port = wait_port_file(port_file)
        authority_pem, authority_public = generate_key()
        root = work / "fleet"
        write_fleet(root, f"http://127.0.0.1:{stub_port}", authority_public, generate_key()[0])
        store = open_store(None, root)
        with store.lock("bench") as lease:
            store.record_applied_fleet(lease, read_fleet_files(root))
        api_key = create_key(store, "bench")
        idp = generate_dev_key()  # the package's own development identity provider
        key_file = work / "idp.pem"
        key_file.write_bytes(idp.public_pem)
        host = "127.0.0.1"
        allowed = token(idp.private_pem, "US", ["US"])
        affected = token(idp.private_pem, "US", ["DE"])

        print(f"machine: {machine()}")
        print(
            f"command: .venv/bin/python bench/gateway.py --rate {','.join(map(str, rates))} "
            f"--duration {args.duration} --concurrency {args.concurrency} "
            f"--rounds {args.rounds} --peers {','.join(wanted)} --phases {','.join(sorted(phases))}"
        )
        peers: list[Peer] = []
        skipped: dict[str, str] = {}
        gw_proc, gw_port = start_sovereign(root, key_file, work / "gateway.log", 1, args.profile)
        started.append(gw_proc)
        if "sovereign" in wanted:
            peers.append(Peer("sovereign", gw_proc, gw_port, request_bytes(host, gw_port, allowed)))
        for name, starter, body, credential in (
            ("litellm", start_litellm, LITELLM_BODY, LITELLM_KEY),
            ("nginx", start_nginx, BODY, allowed),
        ):
            if name not in wanted:
                continue
            proc, port, why = starter(work, stub_port)
            if proc is None:
                skipped[name] = why
                print(f"{name}: skipped, {why}")
                continue
            started.append(proc)
            peers.append(Peer(name, proc, port, request_bytes(host, port, credential, body)))
        authz_proc: subprocess.Popen[str] | None = None
        authz_port = 0
        if "nginx+authz" in wanted or args.authz_rate:
            authz_proc, authz_port = start_authz(root, key_file, work / "authz.log")
            started.append(authz_proc)
        if "nginx+authz" in wanted and authz_proc is not None:
            proc, port, why = start_nginx_authz(work, root, authz_port)
            if proc is None:
                skipped["nginx+authz"] = why
                print(f"nginx+authz: skipped, {why}")
            else:
                started.append(proc)
                req = request_bytes(host, port, allowed, BODY, MODEL_HEADER)
                peers.append(Peer("nginx+authz", proc, port, req, (authz_proc,)))
        direct_req = request_bytes(host, stub_port, allowed)
        for peer in peers:  # warm up every path (LiteLLM's first requests are slow)
            run(closed_loop(host, peer.port, peer.request, 4, 1.0))
        run(closed_loop(host, stub_port, direct_req, 4, 1.0))

        # -- open loop: added latency per offered rate -------------------------------------
        added: dict[tuple[str, int], tuple[float, float, float, int]] = {}
        cpu_at: dict[tuple[str, int], float] = {}  # CPU per request at an offered rate
        print()
        print(
            f"{'open loop':<14} {'path':<10} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>9} "
            f"{'added p50':>10} {'added p99':>10} {'errors':>7}"
        )
        for rate in rates:
            direct = run(open_loop(host, stub_port, direct_req, rate, args.duration))
            print(
                f"{rate:>8}/s     {'direct':<10} {direct.rps:7.0f} {direct.pct(50):8.2f} "
                f"{direct.pct(99):9.2f} {'':>10} {'':>10} {direct.errors:7d}"
            )
            for peer in peers:
                pids = peer.pids()
                cpu_before = sum(cpu_seconds(p) for p in pids)
                via = run(open_loop(host, peer.port, peer.request, rate, args.duration))
                cpu_at[(peer.name, rate)] = (sum(cpu_seconds(p) for p in pids) - cpu_before) / max(
                    1, len(via.latencies_ms)
                )
                a50, a99 = via.pct(50) - direct.pct(50), via.pct(99) - direct.pct(99)
                added[(peer.name, rate)] = (a50, a99, via.rps, via.errors)
                print(
                    f"{'':<14} {peer.name:<10} {via.rps:7.0f} {via.pct(50):8.2f} "
                    f"{via.pct(99):9.2f} {a50:10.2f} {a99:10.2f} {via.errors:7d}"
                    f"   CPU {cpu_at[(peer.name, rate)] * 1000:.3f} ms/request"
                )

        # -- closed loop: throughput and CPU per request -----------------------------------
        print()
        closed: dict[str, tuple[float, float, float, float]] = {}
        stub_cpu = cpu_seconds(stub.pid)
        direct = run(closed_loop(host, stub_port, direct_req, args.concurrency, args.duration))
        stub_direct = (cpu_seconds(stub.pid) - stub_cpu) / max(1, len(direct.latencies_ms))
        print(
            f"closed loop c={args.concurrency}: direct {direct.rps:,.0f} req/s, "
            f"stub CPU {stub_direct * 1000:.3f} ms/request"
        )
        gen_total, n_total = 0.0, 0
        for peer in peers:
            pids = peer.pids()
            helpers = [p for proc in peer.also for p in process_tree(proc.pid)]
            helper_before = sum(cpu_seconds(p) for p in helpers)
            before, stub_cpu = sum(cpu_seconds(p) for p in pids), cpu_seconds(stub.pid)
            user = sum(cpu_split(p)[0] for p in pids)
            gen = own_cpu_seconds()
            via = run(closed_loop(host, peer.port, peer.request, args.concurrency, args.duration))
            gen_total += own_cpu_seconds() - gen
            n = max(1, len(via.latencies_ms))
            n_total += n
            cpu = (sum(cpu_seconds(p) for p in pids) - before) / n
            user = (sum(cpu_split(p)[0] for p in pids) - user) / n
            behind = (cpu_seconds(stub.pid) - stub_cpu) / n
            helper = (sum(cpu_seconds(p) for p in helpers) - helper_before) / n
            closed[peer.name] = (via.rps, cpu, user, via.pct(50) - direct.pct(50))
            print(
                f"  {peer.name:<10} {via.rps:8,.0f} req/s, p50 {via.pct(50):6.2f} ms, "
                f"p99 {via.pct(99):7.2f} ms, errors {via.errors}; CPU {cpu * 1000:.3f} ms/request "
                f"(user {user * 1000:.3f}, system {(cpu - user) * 1000:.3f}; stub behind it "
                f"{behind * 1000:.3f})"
            )
            if helpers:
                first, second = peer.name.split("+")
                print(
                    f"  {'':<10} of which {first} {(cpu - helper) * 1000:.3f} ms, "
                    f"{second} {helper * 1000:.3f} ms"
                )
        print(f"  load generator CPU {gen_total / max(1, n_total) * 1000:.3f} ms/request")

        # -- authz alone: decisions per second of one process, and the decision's p99 -------
        authz_figures: dict[str, float] = {}
        if authz_proc is not None and args.authz_rate:
            decision = request_bytes(host, authz_port, allowed, b"", MODEL_HEADER, "GET")
            run(closed_loop(host, authz_port, decision, 4, 1.0))
            before = tree_cpu(authz_proc.pid)
            most = run(closed_loop(host, authz_port, decision, args.concurrency, args.duration))
            per = (tree_cpu(authz_proc.pid) - before) / max(1, len(most.latencies_ms))
            buckets_before = decision_buckets(authz_port)
            offered = run(open_loop(host, authz_port, decision, args.authz_rate, args.duration))
            inside = bucket_quantile(decision_buckets(authz_port), buckets_before, 0.99)
            authz_figures = {
                "max": most.rps,
                "cpu": per,
                "p50": offered.pct(50),
                "p99": offered.pct(99),
                "rate": offered.rps,
                "errors": offered.errors + most.errors,
                "inside_p99": inside,
            }
            print()
            print(
                f"authz alone, 1 process: {most.rps:,.0f} decisions/s closed loop "
                f"(c={args.concurrency}), CPU {per * 1000:.3f} ms/decision; at an offered "
                f"{args.authz_rate:,}/s: {offered.rps:,.0f}/s answered, p50 "
                f"{offered.pct(50):.2f} ms, p99 {offered.pct(99):.2f} ms (HTTP round trip from "
                f"the generator), errors {authz_figures['errors']:.0f}; inside authz (token, "
                f"route, health order; its decision_seconds histogram): "
                f"p99 <= {inside * 1000:.2f} ms"
            )

        # -- workers -----------------------------------------------------------------------
        if "sovereign" in wanted and "workers" in phases:
            w_proc, w_port = start_sovereign(root, key_file, work / "gateway-w2.log", 2)
            started.append(w_proc)
            w_req = request_bytes(host, w_port, allowed)
            run(closed_loop(host, w_port, w_req, 4, 1.0))
            one_req = request_bytes(host, gw_port, allowed)
            ones, twos, cpus = [], [], []
            for _ in range(3):  # alternating: 1 worker, 2 workers, three times
                ones.append(run(closed_loop(host, gw_port, one_req, 32, args.duration)).rps)
                before = tree_cpu(w_proc.pid)
                two = run(closed_loop(host, w_port, w_req, 32, args.duration))
                twos.append(two.rps)
                cpus.append((tree_cpu(w_proc.pid) - before) / max(1, len(two.latencies_ms)))
            one_rps, two_rps = statistics.median(ones), statistics.median(twos)
            print()
            print(
                f"sovereign --workers (closed loop c=32, medians of 3 alternating runs): "
                f"1 worker {one_rps:,.0f} req/s, 2 workers {two_rps:,.0f} req/s "
                f"({two_rps / one_rps:.2f}x; {statistics.median(cpus) * 1000:.3f} ms CPU/request "
                f"over both)"
            )
            w_proc.terminate()
            w_proc.wait(timeout=30)
            started.remove(w_proc)

        # -- API keys against tokens: CPU per request, same gateway, same route ------------
        if "sovereign" in wanted and "keys" in phases:
            authenticate_cost(key_file, allowed, api_key, root)
            tok_req = request_bytes(host, gw_port, allowed)
            key_req = request_bytes(host, gw_port, api_key)
            run(closed_loop(host, gw_port, key_req, 4, 1.0))
            per: dict[str, list[float]] = {"token": [], "key": []}
            for _ in range(3):  # alternating, so load from other processes falls on both
                for kind, req in (("token", tok_req), ("key", key_req)):
                    before = tree_cpu(gw_proc.pid)
                    via = run(closed_loop(host, gw_port, req, args.concurrency, args.duration))
                    assert via.errors == 0, f"{kind} requests failed"
                    per[kind].append((tree_cpu(gw_proc.pid) - before) / len(via.latencies_ms))
            tok_cpu, key_cpu = statistics.median(per["token"]), statistics.median(per["key"])
            print(
                f"gateway CPU per request (closed loop c={args.concurrency}, medians of 3 "
                f"alternating runs): token {tok_cpu * 1000:.3f} ms, API key "
                f"{key_cpu * 1000:.3f} ms ({key_cpu / tok_cpu:.2f}x)"
            )

        # -- directive-to-enforcement at three gateway processes ---------------------------
        if "sovereign" in wanted and "enforcement" in phases and args.rounds > 0:
            ports = [gw_port]
            for i in range(2):
                proc, port = start_sovereign(root, key_file, work / f"gateway-e{i}.log")
                started.append(proc)
                ports.append(port)
            request_of = {p: request_bytes(host, p, affected) for p in ports}
            base_files = read_fleet_files(root)
            enforce: list[float] = []
            lift: list[float] = []
            for i in range(-1, args.rounds):  # round -1 warms up the fresh processes
                path = add_directive(root, f"bench-{i + 1}", authority_pem)
                files = read_fleet_files(root)

                def apply(files: dict[str, bytes] = files) -> None:
                    with store.lock("bench") as lease:
                        store.record_applied_fleet(lease, files)

                times = run(enforcement_round(ports, request_of, apply, 451, 10))
                enforce += times if i >= 0 else []
                path.unlink()
                path.with_name(path.name + ".sig").unlink()

                def restore() -> None:
                    with store.lock("bench") as lease:
                        store.record_applied_fleet(lease, base_files)

                times = run(enforcement_round(ports, request_of, restore, 200, 10))
                lift += times if i >= 0 else []
            print()
            for label, times in (
                ("directive-to-enforcement (apply recorded -> first 451)", enforce),
                ("lift-to-service (directive removed -> first 200)", lift),
            ):
                print(
                    f"{label}, {len(ports)} gateway processes x {args.rounds} rounds: median "
                    f"{statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
                )

        # -- side by side ------------------------------------------------------------------
        print()
        print("side by side (ratio: the peer's figure over Sovereign's)")
        names = [p.name for p in peers]
        header = f"{'measure':<32}" + "".join(f"{n:>14}" for n in names)
        print(header + "".join(f"{'(' + n + ')':>14}" for n in skipped))
        rows: list[tuple[str, dict[str, float]]] = []
        for rate in rates:
            rows.append((f"added p50 at {rate}/s (ms)", {n: added[(n, rate)][0] for n in names}))
            rows.append((f"added p99 at {rate}/s (ms)", {n: added[(n, rate)][1] for n in names}))
        rows.append((f"max req/s (c={args.concurrency})", {n: closed[n][0] for n in names}))
        rows.append(("CPU per request (ms)", {n: closed[n][1] * 1000 for n in names}))
        for label, values in rows:
            line = f"{label:<32}" + "".join(f"{fmt_ms(values[n]):>14}" for n in names)
            print(line + "".join(f"{'skipped':>14}" for _ in skipped))
        if "nginx" in closed and "nginx+authz" in closed:
            plain, both = closed["nginx"], closed["nginx+authz"]
            print(
                f"  nginx+authz: {both[1] / plain[1]:.2f}x nginx alone's CPU per request "
                f"(target <= 2.5x), {both[0] / plain[0]:.2f}x its throughput"
            )
            for rate in rates:
                print(
                    f"  nginx+authz: added p99 at {rate}/s {added[('nginx+authz', rate)][1]:.2f} ms"
                )
            for rate in rates:
                ratio = cpu_at[("nginx+authz", rate)] / cpu_at[("nginx", rate)]
                print(f"  nginx+authz: {ratio:.2f}x nginx alone's CPU per request at {rate}/s")
        if authz_figures:
            print(
                f"  authz: p99 {authz_figures['p99']:.2f} ms at an offered {args.authz_rate:,} "
                f"decisions/s (target < 1 ms at 5,000/s); inside authz p99 <= "
                f"{authz_figures['inside_p99'] * 1000:.2f} ms"
            )
        if "sovereign" in names:
            base = closed["sovereign"]
            for n in names:
                if n != "sovereign":
                    print(
                        f"  {n}: {closed[n][0] / base[0]:.2f}x Sovereign's throughput, "
                        f"{closed[n][1] / base[1]:.2f}x its CPU per request"
                    )
        for name, why in skipped.items():
            print(f"  {name}: skipped, {why}")
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        stub.terminate()
        stub.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
