"""Retrying transient provider failures: exponential backoff with full jitter.

This is the one layer of retries for provider calls: the cloud SDKs' own retries are off for
provider clients (``adaptors``), so a change that keeps failing costs ``max_attempts`` calls,
not ``max_attempts`` times the SDK's (``tests/reconcile/test_retry_layers.py`` counts them
against moto). The numbers, in docs/providers.md ("Retries"): 5 attempts per change, sleeping
a uniform random time up to ``0.5 s * 2**attempt`` capped at 20 s between them (full jitter:
it spreads the retries of many sites hitting the same throttled API, as the AWS architecture
blog recommends). ``SOVEREIGN_RETRY_MAX_ATTEMPTS`` / ``_BASE_DELAY`` / ``_MAX_DELAY`` change
them (tests make failures fast with them).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from orchestrator.errors import TransientProviderError, UsageError

T = TypeVar("T")

ENV_ATTEMPTS = "SOVEREIGN_RETRY_MAX_ATTEMPTS"
ENV_BASE_DELAY = "SOVEREIGN_RETRY_BASE_DELAY"
ENV_MAX_DELAY = "SOVEREIGN_RETRY_MAX_DELAY"

MAX_ATTEMPTS = 5  # calls per change in all, the first included
BASE_DELAY_S = 0.5
MAX_DELAY_S = 20.0


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number", hint=f"e.g. {name}={default}") from None
    if value < 0:
        raise UsageError(f"{name} must not be negative", hint=f"e.g. {name}={default}")
    return value


# Jitter draws from a generator of its own: worker threads that retry must never consume (or
# reseed) the process-wide ``random`` state that other code, and Hypothesis, rely on.
_JITTER = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = MAX_ATTEMPTS
    base_delay: float = BASE_DELAY_S
    max_delay: float = MAX_DELAY_S

    @classmethod
    def from_env(cls) -> RetryPolicy:
        return cls(
            max_attempts=max(1, int(_env_number(ENV_ATTEMPTS, MAX_ATTEMPTS))),
            base_delay=_env_number(ENV_BASE_DELAY, BASE_DELAY_S),
            max_delay=_env_number(ENV_MAX_DELAY, MAX_DELAY_S),
        )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**attempt)]."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return (rng or _JITTER).uniform(0, ceiling)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, TransientProviderError], None] | None = None,
) -> tuple[T, int]:
    """Run ``fn``, retrying ``TransientProviderError``; returns (result, attempts used).

    The last transient error is re-raised once attempts are exhausted; any other error is
    raised at once (permanent failures are not retried)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except TransientProviderError as exc:
            if attempt >= policy.max_attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(policy.delay(attempt - 1))


@dataclass
class Backoff:
    """The same full-jitter backoff for a loop that retries on its own schedule (the
    controller's passes and its standby): after n failures in a row, wait uniform(ceiling / 10,
    ceiling) with ceiling = min(cap, base * 2**n) (a tenth at least, so a failing loop never
    spins). ``reset`` after a success, or after any answer that shows the other side is
    healthy (a standby that sees the lock held); ``cap`` lowers the ceiling of one wait."""

    base: float
    cap: float
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self, cap: float | None = None) -> float:
        limit = self.cap if cap is None else min(self.cap, cap)
        # the exponent is bounded: 2**n of a long outage must not overflow a float
        ceiling = min(limit, self.base * (2 ** min(self.failures, 64)))
        self.failures += 1
        return self.rng.uniform(ceiling / 10, ceiling)

    def reset(self) -> None:
        self.failures = 0
