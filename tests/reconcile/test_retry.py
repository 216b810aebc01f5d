"""Backoff with full jitter: bounds, attempts, and which errors are retried."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import PermanentProviderError, TransientProviderError
from orchestrator.reconcile.retry import RetryPolicy, call_with_retry


@given(st.integers(0, 12), st.floats(0, 5), st.floats(0, 60), st.integers(0, 2**32))
def test_delay_is_within_the_capped_exponential(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=base, max_delay=cap)
    d = policy.delay(attempt, random.Random(seed))
    assert 0 <= d <= min(cap, base * 2**attempt)


def test_transient_errors_are_retried_until_success() -> None:
    sleeps: list[float] = []
    calls = iter([TransientProviderError("throttled"), TransientProviderError("503"), "done"])

    def flaky() -> str:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    result, attempts = call_with_retry(flaky, RetryPolicy(5, 1.0, 10.0), sleep=sleeps.append)
    assert (result, attempts) == ("done", 3)
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0


def test_gives_up_after_max_attempts() -> None:
    count = 0

    def always() -> None:
        nonlocal count
        count += 1
        raise TransientProviderError("timeout")

    with pytest.raises(TransientProviderError):
        call_with_retry(always, RetryPolicy(4, 0.0, 0.0), sleep=lambda _: None)
    assert count == 4


def test_permanent_errors_are_not_retried() -> None:
    count = 0

    def denied() -> None:
        nonlocal count
        count += 1
        raise PermanentProviderError("access denied")

    with pytest.raises(PermanentProviderError):
        call_with_retry(denied, RetryPolicy(5, 0.0, 0.0), sleep=lambda _: None)
    assert count == 1
