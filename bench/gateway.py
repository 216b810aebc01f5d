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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.gateway_fleet import (  # noqa: E402
    add_directive,
    authenticate_cost,
    create_key,
    token,
    write_fleet,
)
from bench.gateway_peers import (  # noqa: E402
    LITELLM_KEY,
    Peer,
    cpu_seconds,
    cpu_split,
    machine,
    own_cpu_seconds,
    process_tree,
    run,
    serve_stub,
    start_authz,
    start_litellm,
    start_nginx,
    start_nginx_authz,
    start_sovereign,
    tree_cpu,
    wait_port_file,
)
from orchestrator.fleet.loader import read_fleet_files  # noqa: E402
from orchestrator.fleet.signing import (  # noqa: E402
    generate_key,
)
from orchestrator.gateway.devtokens import generate_dev_key  # noqa: E402
from orchestrator.state import open_store  # noqa: E402

CHAT = "/v1/chat/completions"


BODY = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}).encode()


# LiteLLM's region filter reads allowed_model_region from the request (a virtual key's setting
# in its proxy, which needs a database; in the body it reaches the router the same way).
LITELLM_BODY = json.dumps(
    {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "allowed_model_region": "us"}
).encode()


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
