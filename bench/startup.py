"""CLI start-up benchmark: whole-process runs of the commands people type most.

Prints figures, asserts nothing (tests/cli/test_startup.py asserts which modules start-up
imports, not how long it takes). Each figure is the median of ``--runs`` runs of a fresh
``python -m orchestrator ...`` process: wall time, and CPU time (user + system) of the child,
which is what a loaded machine cannot inflate. Children run with bytecode caching on (an
installed package has its ``.pyc`` files; ``PYTHONDONTWRITEBYTECODE``, set in some development
shells, would otherwise recompile every module of Sovereign on every run), warmed once first.

    .venv/bin/python bench/startup.py [--runs N]
    .venv/bin/python bench/startup.py --against ../before [--runs N]

``--against CHECKOUT`` compares with another checkout of Sovereign (its own ``.venv``, e.g. a
``git worktree`` at an older commit) in the same run: single runs alternate between the two
trees, and it prints each tree's median CPU time and the ratio, the figure that survives a
noisy machine.
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


def run_once(args: list[str], python: str = sys.executable) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [python, "-m", "orchestrator", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        env=CHILD_ENV,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def compare(other: Path, runs: int) -> None:
    """Alternate single runs of each command between this tree and ``other``'s (its own
    interpreter and fleet), so both see the same machine; print medians and the ratio."""
    python = str(other / ".venv" / "bin" / "python")
    if not Path(python).exists():
        sys.exit(f"{other} has no .venv: run `make .venv/.installed-stamp` there first")

    def theirs(args: list[str]) -> list[str]:
        return [
            str(other / a[len(str(REPO)) + 1 :]) if a.startswith(str(REPO)) else a for a in args
        ]

    print(f"{'command (CPU median)':<38} {'other':>9} {'this':>9} {'this/other':>11}")
    for label, args in CASES.items():
        run_once(args), run_once(theirs(args), python)  # warm both
        mine: list[float] = []
        other_cpu: list[float] = []
        for i in range(runs):
            order = [(mine, args, sys.executable), (other_cpu, theirs(args), python)]
            for samples, argv, py in order if i % 2 == 0 else order[::-1]:
                samples.append(run_once(argv, py)[1])
        a, b = statistics.median(other_cpu), statistics.median(mine)
        print(f"{label:<38} {a * 1000:>6.0f} ms {b * 1000:>6.0f} ms {b / a:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    options = parser.parse_args()
    runs = options.runs
    if options.against is not None:
        compare(options.against.resolve(), runs)
        return
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
