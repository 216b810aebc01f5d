"""``sovereign evidence`` throughput: decision lines re-judged per second.

    .venv/bin/python bench/evidence.py [--lines N] [--fleet regions|bench] [--seed S]

Writes N decision lines (the gateway's own encoder, ``gateway.decisionlog.record_json``) for
random principals and models over a year, decided by the route table of a fleet recorded as
applied in a scratch SQLite state (the example fleet, or the generated bench fleet's
geography with its 10,000 directives when ``--fleet bench``: in memory, so its digest is
resolved by the loader stub below), then times ``collect_evidence`` over the file: parse, look
the fleet up by digest, re-judge, count, number. Prints lines/s and the extrapolated time for
10 million lines (the work is one pass, linear in lines: the compiled table is built once per
fleet digest and every instant is a bisect inside it).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.evidence.report import collect_evidence
from orchestrator.fleet.loader import load_fleet_files, read_fleet_files
from orchestrator.fleet.model import Fleet
from orchestrator.gateway.decisionlog import DecisionRecord, record_json
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from orchestrator.state.audit import AuditReport

START = datetime(2026, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]


def example_fleet() -> Fleet:
    files = read_fleet_files(REPO / "regions")
    return load_fleet_files(files, "regions")


def write_lines(fleet: Fleet, path: Path, n: int, seed: int) -> float:
    import json

    rng = random.Random(seed)
    table = RouteTable.compile(fleet)
    countries = sorted(fleet.country_home)
    models = sorted(fleet.models)
    groups = sorted({g for d in fleet.directives.values() for g in d.audience.except_groups})
    encode = json.JSONEncoder(separators=(",", ":")).encode
    t0 = time.perf_counter()
    with path.open("w") as f:
        for seq in range(1, n + 1):
            p = Principal(
                rng.choice(countries),
                frozenset(rng.sample(countries, rng.choice((0, 1, 1, 2)))),
                frozenset(rng.sample(groups, 1)) if groups and rng.random() < 0.2 else frozenset(),
            )
            model = rng.choice(models)
            at = START + timedelta(seconds=rng.randrange(365 * 24 * 3600))
            route = table.route(model, p, at)
            r = DecisionRecord(at, "/v1/chat/completions", fleet.digest, table.version, 1)
            r.model, r.principal, r.route = model, p, route
            r.caller = {"kind": "token", "label": "bench#0123456789abcdef"}
            if route:
                r.status, r.site = 200, route[0]
            else:
                r.status, r.reasons = 451, [{"rule": "directive", "ref": "x"}]
            f.write(encode(record_json("gw-bench", seq, r)) + "\n")
    return time.perf_counter() - t0


def log_cost(n: int) -> None:
    """The decision log's cost: on the request path (reserve + commit, what a request pays)
    and the writer thread's throughput (encode + append), n records."""
    from orchestrator.gateway.decisionlog import DecisionLog, DecisionLogSettings

    p = Principal("DE", frozenset({"DE"}), frozenset())
    with tempfile.TemporaryDirectory(prefix="sovereign-decision-log-bench-") as tmp:
        log = DecisionLog(DecisionLogSettings(Path(tmp) / "d.jsonl", "gw", queue_size=n + 1))
        record = DecisionRecord(START, "/v1/chat/completions", "f" * 64, "t" * 16, 1)
        record.model, record.principal, record.status = "fable-5", p, 200
        record.site, record.route = "aws-eu-central-1", ("aws-eu-central-1", "gcp-eu-west4")
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            ticket = log.reserve()
            assert ticket is not None
            log.commit(ticket, record)
        path_s = time.perf_counter() - t0
        while log.written < n:
            time.sleep(0.01)
        total_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        log.close()
    print(
        f"decision log: {path_s / n * 1e6:.1f} us per request on the request path "
        f"(reserve + commit); the writer wrote {n:,} lines in {total_s:.1f} s = "
        f"{n / total_s:,.0f} lines/s; process CPU {cpu_s / n * 1e6:.1f} us per line in all"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument(
        "--log-only", action="store_true", help="Time only the decision log's own cost."
    )
    parser.add_argument("--fleet", choices=("regions", "bench"), default="regions")
    parser.add_argument("--seed", type=int, default=26)
    args = parser.parse_args()
    if args.log_only:
        log_cost(args.lines)
        return
    if args.fleet == "bench":
        from bench.route import generate_fleet

        fleet = generate_fleet(args.seed)
    else:
        fleet = example_fleet()
    jurisdiction = sorted(fleet.jurisdictions)[0]
    with tempfile.TemporaryDirectory(prefix="sovereign-evidence-bench-") as tmp:
        path = Path(tmp) / "decisions.jsonl"
        wrote = write_lines(fleet, path, args.lines, args.seed)
        size = path.stat().st_size
        print(
            f"wrote {args.lines:,} lines ({size / args.lines:.0f} bytes each) in {wrote:.1f} s "
            f"on the {args.fleet} fleet ({len(fleet.directives):,} directives)"
        )
        t0, c0 = time.perf_counter(), time.process_time()
        ev = collect_evidence(
            jurisdiction,
            START,
            START + timedelta(days=366),
            [path],
            audit_report=AuditReport(True, 0, None, None),
            entries=[],
            current_digest=None,
            load_fleet=lambda digest: fleet if digest == fleet.digest else None,
        )
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert ev.judged == args.lines and not ev.violations and not ev.gaps and not ev.unparsed, (
        ev.judged,
        ev.violations[:3],
        ev.gaps[:3],
        ev.unparsed[:3],
    )
    rate, cpu_rate = args.lines / took, args.lines / cpu
    print(
        f"evidence: {args.lines:,} lines re-judged in {took:.1f} s wall = {rate:,.0f} lines/s "
        f"(0 violations, 0 gaps); 10,000,000 lines at this rate: {10_000_000 / rate / 60:.1f} min"
    )
    print(
        f"  CPU time {cpu:.1f} s = {cpu_rate:,.0f} lines per CPU second: 10,000,000 lines on "
        f"one unshared core: about {10_000_000 / cpu_rate / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
