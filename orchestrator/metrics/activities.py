"""The activity worker's metrics: attempts, their latencies and failures, queue lag.

Observed once per attempt on the worker's event loop; the lag and in-flight gauges
are sampled by that loop every few seconds. Labels are task queues, activity types,
error types (exception class names) and partitions, never ids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.metrics.buckets import LONG

__all__ = ["ActivityMetrics"]


class ActivityMetrics:
    """The activity workers' metric families, registered in ``registry`` (one per
    process, shared by every task queue it serves)."""

    def __init__(self, registry: CollectorRegistry, dead_letters: Counter) -> None:
        self.registry = registry
        #: shared with the engine: ``source="activity_worker"``
        self.dead_letters = dead_letters
        self.schedule_to_start = Histogram(
            "saga_activity_schedule_to_start_seconds",
            "From the engine scheduling an attempt to a worker starting it.",
            ["activity_type"], buckets=LONG, registry=registry,
        )  # fmt: skip
        self.start_to_close = Histogram(
            "saga_activity_start_to_close_seconds",
            "From a worker starting an attempt to its outcome.",
            ["activity_type"], buckets=LONG, registry=registry,
        )  # fmt: skip
        self.attempts = Counter(
            "saga_activity_attempts",
            "Attempts finished, by outcome: completed, failed (retryable), "
            "failed_non_retryable, timed_out, cancelled (stopped by a cancel from the "
            "engine), pending (left to a task token's holder).",
            ["activity_type", "outcome"], registry=registry,
        )  # fmt: skip
        self.failures = Counter(
            "saga_activity_failures",
            "Failed attempts by error type; retryable ones are retried while the policy allows.",
            ["activity_type", "error_type", "retryable"], registry=registry,
        )  # fmt: skip
        self.retries = Counter(
            "saga_activity_retry_attempts",
            "Attempts started that are retries (attempt number above 1).",
            ["activity_type"], registry=registry,
        )  # fmt: skip
        self.cancels = Counter(
            "saga_activity_cancels",
            "Cancels of a queue's attempts at one worker, by action: received (read from "
            "the cancels topic), stopped (the attempt was running here), skipped (its "
            "task came later and was not started).",
            ["task_queue", "action"], registry=registry,
        )  # fmt: skip
        self.lag = Gauge(
            "saga_activity_consumer_lag",
            "Tasks not yet fetched on an assigned task-queue partition (end of log - position).",
            ["task_queue", "partition"], registry=registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "saga_activity_in_flight", "Attempts running now.", ["task_queue"],
            registry=registry,
        )  # fmt: skip
        self.paused = Gauge(
            "saga_activity_type_paused",
            "1 while an activity type is paused on a task queue (as this worker read it).",
            ["task_queue", "activity_type"], registry=registry,
        )  # fmt: skip
        self.held = Gauge(
            "saga_activity_held",
            "Tasks of a paused activity type held by this worker (not started).",
            ["task_queue", "activity_type"], registry=registry,
        )  # fmt: skip
        self.buffered = Gauge(
            "saga_activity_buffered", "Tasks fetched and waiting for a free slot.",
            ["task_queue"], registry=registry,
        )  # fmt: skip

    def sample_pauses(
        self, task_queue: str, paused: list[str], held: Mapping[str, int], exported: set[str]
    ) -> set[str]:
        """Set one queue's paused-type gauges; drop types no longer paused or held.
        Returns the activity types exported now (pass them back next time)."""
        now = set(paused) | set(held)
        for activity_type in now:
            self.paused.labels(task_queue, activity_type).set(
                1 if activity_type in paused else 0
            )
            self.held.labels(task_queue, activity_type).set(held.get(activity_type, 0))
        for gone in exported - now:
            with contextlib.suppress(KeyError):
                self.paused.remove(task_queue, gone)
            with contextlib.suppress(KeyError):
                self.held.remove(task_queue, gone)
        return now

    def sample(
        self, task_queue: str, lags: Mapping[int, int], exported: set[int], running: int,
        buffered: int,
    ) -> set[int]:
        """Set one queue's gauges; drop partitions no longer assigned. Returns the
        partitions exported now (pass them back next time)."""
        for partition, lag in lags.items():
            self.lag.labels(task_queue, str(partition)).set(lag)
        for gone in exported - set(lags):
            with contextlib.suppress(KeyError):  # gone already
                self.lag.remove(task_queue, str(gone))
        self.in_flight.labels(task_queue).set(running)
        self.buffered.labels(task_queue).set(buffered)
        return set(lags)
