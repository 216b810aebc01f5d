"""CLI start-up benchmark: whole-process runs of the commands people type most.

Prints figures, asserts nothing (tests/cli/test_startup.py asserts which modules start-up
imports, not how long it takes). Each figure is the median of ``--runs`` runs of a fresh
``python -m orchestrator ...`` process: wall time, and CPU time (user + system) of the child,
which is what a loaded machine cannot inflate. Children run with bytecode caching on (an
installed package has its ``.pyc`` files; ``PYTHONDONTWRITEBYTECODE``, set in some development
shells, would otherwise recompile every module of Sovereign on every run), warmed once first.

    .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "sovereign version": ["version"],
    "sovereign --help": ["--help"],
    "sovereign validate (example fleet)": ["validate", "--fleet", str(REPO / "regions")],
    "sovereign explain (example fleet)": [
        "explain",
        "--fleet",
        str(REPO / "regions"),
        "-m",
        "fable-5",
        "-r",
        "DE",
    ],
}
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
    "COLUMNS": "80"
}


def run_once(args: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        env=CHILD_ENV,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    for args in CASES.values():  # warm the file cache and write the bytecode caches
        run_once(args)
    print(f"{'command':<38} {'wall median':>12} {'cpu median':>11}   ({runs} runs each)")
    for label, args in CASES.items():
        samples = [run_once(args) for _ in range(runs)]
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        print(f"{label:<38} {wall * 1000:>9.0f} ms {cpu * 1000:>8.0f} ms")
    bare = [run_once_python() for _ in range(runs)]
    wall = statistics.median(b[0] for b in bare)
    cpu = statistics.median(b[1] for b in bare)
    print(f"{'python -c pass (the floor)':<38} {wall * 1000:>9.0f} ms {cpu * 1000:>8.0f} ms")


def run_once_python() -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    main()
