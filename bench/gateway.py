"""Gateway benchmark: added latency, throughput, and directive-to-enforcement time.

Prints figures; it is not a test. Everything runs on loopback, in three processes so that no
two of them share an interpreter lock: a stub upstream (``--serve-stub``), the real
``sovereign gateway`` command serving an applied fleet from a SQLite state store, and this
process generating load with a minimal keep-alive HTTP/1.1 client (httpx would cost more CPU
than the gateway itself and cap the offered rate).

Measured:
- added latency: p50/p99 of requests through the gateway minus the same requests sent to the
  stub directly, at a fixed offered rate (open loop; latency counted from the *scheduled* send
  time, so queueing is not hidden) and at a fixed concurrency (closed loop);
- requests per second at that concurrency;
- directive-to-enforcement: a suspend directive is applied through the state store (as
  ``sovereign apply`` records it) and we time the first 451 for an affected principal, and the
  first 200 again after the directive is removed.

    .venv/bin/python bench/gateway.py [--rate 1000,100] [--duration 5] [--concurrency 16]
        [--profile gateway.prof]

The load generator and the stub run on uvloop when it is installed (they are measuring
instruments: the less CPU they take from the shared cores, the less they disturb the gateway),
and the bench reports the generator's own CPU per request so that a saturated generator shows.
``--profile FILE`` runs the gateway under cProfile and writes its stats to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from pathlib import Path
from typing import Any, TypeVar

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.fleet.loader import read_fleet_files  # noqa: E402
from orchestrator.fleet.signing import generate_key, sign_file_bytes, write_signature  # noqa: E402
from orchestrator.state import open_store  # noqa: E402

T = TypeVar("T")
CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}).encode()

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
        finally:
            self._free.put_nowait((reader, writer))


def request_bytes(host: str, port: int, token: str) -> bytes:
    return (
        f"POST {CHAT} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


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
    await asyncio.gather(*tasks)
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


def write_fleet(root: Path, stub_url: str, public_key: str) -> None:
    (root / "directives").mkdir(parents=True)
    (root / "us.yaml").write_text(PROFILE.format(public=public_key, endpoint=stub_url))
    (root / "models.yaml").write_text(MODELS)
    (root / "fleet.yaml").write_text("unlisted_countries: deny\n")


def add_directive(root: Path, directive_id: str, private_pem: bytes) -> Path:
    path = root / "directives" / f"{directive_id}.yaml"
    path.write_text(DIRECTIVE.format(id=directive_id))
    write_signature(path, "us-gov", sign_file_bytes(private_pem, path.read_bytes()))
    return path


def token(private: Ed25519PrivateKey, residency: str, nationalities: list[str]) -> str:
    claims = {
        "aud": "sovereign",
        "exp": int(time.time()) + 3600,
        "residency": residency,
        "nationalities": nationalities,
        "sub": "bench",
    }
    return jwt.encode(claims, private, algorithm="EdDSA")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate",
        default="1000,100",
        help="offered requests per second, comma-separated for several runs",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="enforcement measurements")
    parser.add_argument(
        "--profile", type=Path, help="run the gateway under cProfile and write its stats here"
    )
    parser.add_argument("--serve-stub", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        serve_stub(args.serve_stub)
        return

    rates = [int(r) for r in str(args.rate).split(",") if r.strip()]
    work = Path(tempfile.mkdtemp(prefix="sovereign-bench-"))
    port_file = work / "stub.port"
    stub = subprocess.Popen([sys.executable, __file__, "--serve-stub", str(port_file)])
    gateway: subprocess.Popen[str] | None = None
    try:
        stub_port = wait_port_file(port_file)
        authority_pem, authority_public = generate_key()
        root = work / "fleet"
        write_fleet(root, f"http://127.0.0.1:{stub_port}", authority_public)
        store = open_store(None, root)
        with store.lock("bench") as lease:
            store.record_applied_fleet(lease, read_fleet_files(root))
        idp = Ed25519PrivateKey.generate()
        key_file = work / "idp.pem"
        key_file.write_bytes(
            idp.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        profile = ["-m", "cProfile", "-o", str(args.profile.resolve())] if args.profile else []
        gateway = subprocess.Popen(
            [
                sys.executable,
                *profile,
                "-m",
                "orchestrator",
                "gateway",
                "--fleet",
                str(root),
                "--port",
                "0",
                "--token-key",
                str(key_file),
                "--probe-interval",
                "0",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=open(work / "gateway.log", "w"),
            text=True,  # noqa: SIM115
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert gateway.stdout is not None
        started = json.loads(gateway.stdout.readline())
        gw_port = int(started["url"].rsplit(":", 1)[1])
        host = "127.0.0.1"
        allowed = token(idp, "US", ["US"])
        affected = token(idp, "US", ["DE"])
        direct_req = request_bytes(host, stub_port, allowed)
        gw_req = request_bytes(host, gw_port, allowed)
        affected_req = request_bytes(host, gw_port, affected)

        print(f"machine: {machine()}")
        print(
            f"command: .venv/bin/python bench/gateway.py --rate {','.join(map(str, rates))} "
            f"--duration {args.duration} --concurrency {args.concurrency}"
        )
        run(closed_loop(host, gw_port, gw_req, 4, 1.0))  # warm up both paths
        run(closed_loop(host, stub_port, direct_req, 4, 1.0))

        rows = []
        for rate in rates:
            direct = run(open_loop(host, stub_port, direct_req, rate, args.duration))
            via = run(open_loop(host, gw_port, gw_req, rate, args.duration))
            rows.append((f"open loop {rate}/s", direct, via))
        stub_cpu = cpu_seconds(stub.pid)
        direct = run(closed_loop(host, stub_port, direct_req, args.concurrency, args.duration))
        stub_cpu_direct = cpu_seconds(stub.pid) - stub_cpu
        gw_cpu, stub_cpu = cpu_seconds(gateway.pid), cpu_seconds(stub.pid)
        gw_user = cpu_split(gateway.pid)[0]
        gen_cpu = own_cpu_seconds()
        via = run(closed_loop(host, gw_port, gw_req, args.concurrency, args.duration))
        gen_cpu = own_cpu_seconds() - gen_cpu
        gw_user = cpu_split(gateway.pid)[0] - gw_user
        gw_cpu = cpu_seconds(gateway.pid) - gw_cpu
        stub_cpu_via = cpu_seconds(stub.pid) - stub_cpu
        rows.append((f"closed loop c={args.concurrency}", direct, via))
        print()
        print(f"{'phase':<22} {'path':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for label, direct, via in rows:
            for name, r in (("direct", direct), ("gateway", via)):
                print(
                    f"{label:<22} {name:<8} {r.rps:8.0f} {r.pct(50):8.2f} {r.pct(99):8.2f} "
                    f"{r.errors:7d}"
                )
            print(
                f"{label:<22} {'added':<8} {'':>8} {via.pct(50) - direct.pct(50):8.2f} "
                f"{via.pct(99) - direct.pct(99):8.2f}"
            )

        n_direct, n_via = len(direct.latencies_ms), len(via.latencies_ms)
        print()
        print(
            "CPU per request (closed loop; load-independent, unlike the latencies): "
            f"stub answering directly {stub_cpu_direct / n_direct * 1000:.2f} ms; "
            f"gateway {gw_cpu / n_via * 1000:.2f} ms "
            f"(user {gw_user / n_via * 1000:.2f}, system {(gw_cpu - gw_user) / n_via * 1000:.2f}) "
            f"(+ stub behind it {stub_cpu_via / n_via * 1000:.2f} ms); "
            f"load generator {gen_cpu / n_via * 1000:.2f} ms"
        )

        enforce, lift = [], []
        base_files = read_fleet_files(root)
        for i in range(args.rounds):
            path = add_directive(root, f"bench-{i}", authority_pem)
            with store.lock("bench") as lease:
                store.record_applied_fleet(lease, read_fleet_files(root))
            enforce.append(run(time_until(host, gw_port, affected_req, 451, 10)))
            path.unlink()
            path.with_name(path.name + ".sig").unlink()
            with store.lock("bench") as lease:
                store.record_applied_fleet(lease, base_files)
            lift.append(run(time_until(host, gw_port, affected_req, 200, 10)))
        print()
        for label, times in (
            ("directive-to-enforcement (apply recorded -> first 451)", enforce),
            ("lift-to-service (directive removed -> first 200)", lift),
        ):
            print(
                f"{label}, reload interval 0.5 s: median "
                f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
            )
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(timeout=15)
        stub.terminate()
        stub.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
