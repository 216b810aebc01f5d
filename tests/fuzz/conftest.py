"""The fuzz campaign's budget and its counts.

Every target runs ``examples()`` Hypothesis examples: a smoke budget in the default test run
(seconds per target), ``SOVEREIGN_FUZZ_EXAMPLES`` under ``make fuzz`` (10,000 per target).
Each target counts what it saw per outcome (accepted, each refusal kind) through ``count()``;
the counts are printed at the end of the run, so the campaign's figures are read off the run
that produced them (docs/security.md quotes them).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, settings

SMOKE_EXAMPLES = 25
COUNTS: defaultdict[str, Counter[str]] = defaultdict(Counter)


def examples() -> int:
    return int(os.environ.get("SOVEREIGN_FUZZ_EXAMPLES", SMOKE_EXAMPLES))


def budget() -> settings:
    """Hypothesis settings for one target: the budget, no deadline, no shrinking-only phases
    cut short (a failure still shrinks), derandomized only when asked (``--hypothesis-seed``)."""
    return settings(
        max_examples=examples(),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


def count(target: str, outcome: str) -> None:
    COUNTS[target][outcome] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    terminalreporter.section("fuzz campaign counts")
    for target in sorted(COUNTS):
        outcomes = COUNTS[target]
        detail = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        terminalreporter.write_line(f"{target}: {sum(outcomes.values())} inputs ({detail})")
