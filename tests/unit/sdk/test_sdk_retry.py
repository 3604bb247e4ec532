"""Retry policy math."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.engine.events import Failure
from orchestrator.retry import RetryPolicy, backoff_ms, days, next_retry_at, seconds

F = Failure(message="x", type="Transient")
H = 3_600_000


def test_backoff_doubles_and_is_capped() -> None:
    rec = RetryPolicy(initial=seconds(1), backoff=2.0, maximum=seconds(10)).to_record()
    assert [backoff_ms(rec, n) for n in range(1, 7)] == [1000, 2000, 4000, 8000, 10000, 10000]
    assert backoff_ms(rec, 100_000) == 10000


def test_default_maximum_is_100_times_initial_and_record_round_trips() -> None:
    p = RetryPolicy(initial=seconds(2), expire_after=days(30), non_retryable_errors=("Bad",))
    rec = p.to_record()
    assert rec.maximum_ms == 200_000 and rec.expire_after_ms == 30 * 24 * H
    assert RetryPolicy.from_record(rec) == RetryPolicy(
        initial=seconds(2), maximum=seconds(200), expire_after=days(30),
        non_retryable_errors=("Bad",),
    )


def test_expiration_counts_from_first_schedule() -> None:
    rec = RetryPolicy(initial=timedelta(hours=1), backoff=1.0, expire_after=days(1)).to_record()
    assert next_retry_at(rec, attempt=5, failure=F, now_ms=22 * H, first_scheduled_ms=0) == 23 * H
    assert next_retry_at(rec, attempt=6, failure=F, now_ms=23 * H + 1, first_scheduled_ms=0) is None


def test_max_attempts_non_retryable_and_error_types_stop_retries() -> None:
    rec = RetryPolicy(max_attempts=3, non_retryable_errors=("Fatal",)).to_record()
    assert next_retry_at(rec, attempt=2, failure=F, now_ms=0, first_scheduled_ms=0) == 2000
    assert next_retry_at(rec, attempt=3, failure=F, now_ms=0, first_scheduled_ms=0) is None
    fatal = Failure(message="x", type="Fatal")
    assert next_retry_at(rec, attempt=1, failure=fatal, now_ms=0, first_scheduled_ms=0) is None
    flagged = Failure(message="x", type="T", non_retryable=True)
    assert next_retry_at(rec, attempt=1, failure=flagged, now_ms=0, first_scheduled_ms=0) is None


def test_error_requested_delay_replaces_backoff_once() -> None:
    rec = RetryPolicy().to_record()
    asked = Failure(message="429", type="RateLimited", next_retry_delay_ms=30_000)
    assert next_retry_at(rec, attempt=1, failure=asked, now_ms=10, first_scheduled_ms=0) == 30_010


def test_invalid_policy_lists_every_problem() -> None:
    with pytest.raises(ValueError, match=r"initial must be positive.*backoff must be >= 1\.0"):
        RetryPolicy(initial=timedelta(0), backoff=0.5)
