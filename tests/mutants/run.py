"""``make mutants``: apply each mutant of ``tests/mutants/catalog.py`` in a scratch copy of the
repository and check that the tests aimed at it fail (the mutant is *killed*).

    python -m tests.mutants.run [--only ID ...] [--examples N] [--seed S] [--json]

The working tree is never touched: the repository is copied once into a temporary directory
(without .git, .venv and caches), every mutant is written into that copy and restored after its
runs, and pytest runs there with ``PYTHONPATH`` pointing at it (so processes the tests spawn,
``python -m orchestrator``, run the mutated code too). First the unmutated copy must pass every
test named (a baseline: a test that fails anyway kills nothing). Then, per mutant, the ``suite``
tests and the ``campaign`` (fuzz targets with ``SOVEREIGN_FUZZ_EXAMPLES=N`` examples and a fixed
Hypothesis seed) run separately; each must fail. Exit 1 when a snippet is not found exactly
once, the baseline fails, or any mutant survives either run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.mutants.catalog import MUTANTS, PENDING, Mutant

REPO = Path(__file__).resolve().parents[2]
_IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".sovereign",
    "node_modules",
)


def _pytest(scratch: Path, tests: tuple[str, ...], examples: int, seed: int) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    env["PYTHONPATH"] = str(scratch)
    env["SOVEREIGN_FUZZ_EXAMPLES"] = str(examples)
    args = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    args += [f"--hypothesis-seed={seed}", *tests]
    done = subprocess.run(
        args,
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return done.returncode, " | ".join(tail)[-300:]


def _verdict(code: int) -> str:
    # pytest: 0 all passed, 1 some failed; anything else (interrupted, usage, nothing collected)
    # is an error of the run, never counted as a kill
    return {0: "survived", 1: "killed"}.get(code, f"error (pytest exit {code})")


def check_snippets(root: Path, mutants: tuple[Mutant, ...] = MUTANTS) -> list[str]:
    """Every mutant whose original snippet does not occur exactly once under ``root``."""
    problems = []
    for m in mutants:
        path = root / m.file
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        n = text.count(m.original)
        if n != 1:
            problems.append(f"{m.id}: snippet found {n} times in {m.file}")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run only this mutant id")
    parser.add_argument("--examples", type=int, default=200, help="fuzz examples per campaign")
    parser.add_argument("--seed", type=int, default=13, help="Hypothesis seed")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    ns = parser.parse_args(argv)
    chosen = tuple(m for m in MUTANTS if not ns.only or m.id in ns.only)
    unknown = set(ns.only) - {m.id for m in MUTANTS}
    if unknown:
        print(f"unknown mutant(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 1
    problems = check_snippets(REPO, chosen)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    results: list[dict[str, object]] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="sovereign-mutants-") as tmp:
        scratch = Path(tmp) / "repo"
        shutil.copytree(REPO, scratch, ignore=_IGNORED, symlinks=True)
        every = tuple(dict.fromkeys(t for m in chosen for t in (*m.suite, *m.campaign)))
        started = time.monotonic()
        code, tail = _pytest(scratch, every, ns.examples, ns.seed)
        print(f"baseline (unmutated, {len(every)} test targets): exit {code} "
              f"in {time.monotonic() - started:.0f} s", file=sys.stderr)  # fmt: skip
        if code != 0:
            print(f"the baseline fails, so no mutant can be judged: {tail}", file=sys.stderr)
            return 1
        for m in chosen:
            path = scratch / m.file
            original = path.read_text(encoding="utf-8")
            path.write_text(original.replace(m.original, m.replacement, 1), encoding="utf-8")
            try:
                row: dict[str, object] = {"id": m.id, "file": m.file}
                for part, tests in (("suite", m.suite), ("campaign", m.campaign)):
                    if not tests:
                        row[part] = f"none ({m.no_campaign})"
                        continue
                    started = time.monotonic()
                    code, tail = _pytest(scratch, tests, ns.examples, ns.seed)
                    verdict = _verdict(code)
                    row[part] = verdict
                    row[f"{part}_seconds"] = round(time.monotonic() - started)
                    if verdict != "killed":
                        ok = False
                        row[f"{part}_output"] = tail
                print(f"{m.id}: suite {row['suite']}; campaign {row['campaign']}", file=sys.stderr)
                results.append(row)
            finally:
                path.write_text(original, encoding="utf-8")
    killed = sum(1 for r in results for p in ("suite", "campaign") if r.get(p) == "killed")
    runs = sum(
        1 for r in results for p in ("suite", "campaign") if not str(r[p]).startswith("none")
    )
    summary = {
        "mutants": len(results),
        "killed_runs": killed,
        "runs": runs,
        "score": f"{killed}/{runs}",
        "examples": ns.examples,
        "seed": ns.seed,
        "pending": PENDING,
        "results": results,
    }
    if ns.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"mutation score: {killed} of {runs} runs killed ({len(results)} mutants)")
        for name, why in PENDING.items():
            print(f"pending: {name}: {why}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
