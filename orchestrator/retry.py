"""Retry policies and their backoff math.

The engine applies a policy when an activity attempt fails: it either records the
attempt failure with the time of the next attempt (a durable timer, so a retry
three days later costs nothing while waiting) or gives up and fails the activity.

Delay before attempt ``n + 1`` after attempt ``n`` failed::

    min(initial * backoff ** (n - 1), maximum)

unless the error asked for its own ``next_retry_delay``. The policy gives up when
the error is non-retryable (``ApplicationError(non_retryable=True)`` or its type is
in ``non_retryable_errors``), when ``max_attempts`` (0 = unlimited) is reached, or
when the next attempt would start after ``expire_after`` measured from the first
attempt's schedule time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from orchestrator.engine.events import Failure, RetryPolicyRecord

__all__ = ["RetryPolicy", "days", "hours", "minutes", "next_retry_at", "seconds"]


def seconds(n: float) -> timedelta:
    """``n`` seconds as a timedelta."""
    return timedelta(seconds=n)


def minutes(n: float) -> timedelta:
    """``n`` minutes as a timedelta."""
    return timedelta(minutes=n)


def hours(n: float) -> timedelta:
    """``n`` hours as a timedelta."""
    return timedelta(hours=n)


def days(n: float) -> timedelta:
    """``n`` days as a timedelta."""
    return timedelta(days=n)


def _ms(d: timedelta) -> int:
    return round(d.total_seconds() * 1000)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How an activity (or compensation) is retried.

    ``maximum`` defaults to 100 x ``initial``; ``max_attempts`` 0 means unlimited;
    ``expire_after`` (days or months are normal values) bounds the total time from
    the first attempt; ``non_retryable_errors`` lists error type names never retried.
    """

    initial: timedelta = timedelta(seconds=1)
    backoff: float = 2.0
    maximum: timedelta | None = None
    max_attempts: int = 0
    expire_after: timedelta | None = None
    non_retryable_errors: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        problems = []
        if self.initial <= timedelta(0):
            problems.append("initial must be positive")
        if self.backoff < 1.0:
            problems.append("backoff must be >= 1.0")
        if self.maximum is not None and self.maximum < self.initial:
            problems.append("maximum must be >= initial")
        if self.max_attempts < 0:
            problems.append("max_attempts must be >= 0")
        if self.expire_after is not None and self.expire_after <= timedelta(0):
            problems.append("expire_after must be positive")
        if problems:
            raise ValueError("invalid RetryPolicy: " + "; ".join(problems))

    def to_record(self) -> RetryPolicyRecord:
        """The policy as recorded in history."""
        maximum = self.maximum if self.maximum is not None else self.initial * 100
        return RetryPolicyRecord(
            initial_ms=_ms(self.initial),
            backoff=self.backoff,
            maximum_ms=_ms(maximum),
            max_attempts=self.max_attempts,
            expire_after_ms=_ms(self.expire_after) if self.expire_after else None,
            non_retryable_errors=list(self.non_retryable_errors),
        )

    @classmethod
    def from_record(cls, rec: RetryPolicyRecord) -> RetryPolicy:
        """Rebuild a policy from its recorded form."""
        return cls(
            initial=timedelta(milliseconds=rec.initial_ms),
            backoff=rec.backoff,
            maximum=timedelta(milliseconds=rec.maximum_ms),
            max_attempts=rec.max_attempts,
            expire_after=(
                timedelta(milliseconds=rec.expire_after_ms)
                if rec.expire_after_ms is not None
                else None
            ),
            non_retryable_errors=tuple(rec.non_retryable_errors),
        )


def backoff_ms(policy: RetryPolicyRecord, attempt: int) -> int:
    """Delay in ms after attempt ``attempt`` (1-based) failed, before the cap applies."""
    try:
        delay = policy.initial_ms * policy.backoff ** (attempt - 1)
    except OverflowError:
        return policy.maximum_ms
    return int(min(delay, policy.maximum_ms))


def next_retry_at(
    policy: RetryPolicyRecord,
    *,
    attempt: int,
    failure: Failure,
    now_ms: int,
    first_scheduled_ms: int,
    schedule_to_close_ms: int | None = None,
) -> int | None:
    """When attempt ``attempt + 1`` should start (epoch ms), or None to give up."""
    if failure.non_retryable or failure.type in policy.non_retryable_errors:
        return None
    if policy.max_attempts and attempt >= policy.max_attempts:
        return None
    delay = (
        failure.next_retry_delay_ms
        if failure.next_retry_delay_ms is not None
        else backoff_ms(policy, attempt)
    )
    at = now_ms + delay
    for limit in (policy.expire_after_ms, schedule_to_close_ms):
        if limit is not None and at > first_scheduled_ms + limit:
            return None
    return at
