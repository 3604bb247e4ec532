"""What an activity worker counts: its stats (for tests) and, when exported, its metrics.

Everything here runs on the worker's event loop thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from orchestrator.metrics import ActivityMetrics, dlq_reason_label
from orchestrator.serde.records import ActivityTask, ActivityTaskFailed
from orchestrator.worker.activity_runner import ActivityOutcome, is_cancellation, is_timeout

__all__ = ["ActivityCounts", "ActivityWorkerStats", "partition_lags"]

#: the worker's own logger, so that its lines keep their name
log = logging.getLogger("orchestrator.worker.activity_worker")


@dataclass(slots=True)
class ActivityWorkerStats:
    """Counters, for tests and metrics."""

    received: int = 0
    """Tasks fetched from the queue, and tasks handed by the engine of this process."""
    handed: int = 0
    """Of ``received``: tasks the engine of this process handed over, not through the
    queue (orchestrator/worker/task_handoff.py)."""
    started: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    pending: int = 0
    """Attempts that raised CompleteAsync (no outcome sent; completed by token)."""
    dead_lettered: int = 0
    cancels_received: int = 0
    """Cancels of this queue read from the cancels topic."""
    cancelled: int = 0
    """Running attempts stopped by a cancel."""
    skipped: int = 0
    """Tasks not started because they were cancelled first."""
    held: int = 0
    """Tasks held because their activity type was paused (counted when held)."""
    released: int = 0
    """Held tasks given back to the worker by an unpause."""
    heartbeats: int = 0
    commits: int = 0
    pauses: int = 0


class ActivityCounts:
    """One worker's :class:`ActivityWorkerStats` and, if ``metrics`` is given, the
    process's activity metrics, updated together (queue-level labels: ``task_queue``)."""

    def __init__(self, task_queue: str, metrics: ActivityMetrics | None) -> None:
        self.task_queue = task_queue
        self.stats = ActivityWorkerStats()
        self.metrics = metrics
        self._lag_exported: set[int] = set()
        self._held_exported: set[str] = set()

    def started(self, task: ActivityTask) -> None:
        """An attempt starts: its wait since it was scheduled, and whether it is a retry."""
        self.stats.started += 1
        if self.metrics is not None:
            waited = max(0.0, time.time() - task.scheduled_time / 1000)
            self.metrics.schedule_to_start.labels(task.activity_type).observe(waited)
            if task.attempt > 1:
                self.metrics.retries.labels(task.activity_type).inc()

    def finished(self, task: ActivityTask, outcome: ActivityOutcome, seconds: float) -> None:
        """An attempt ended in ``outcome`` after ``seconds``."""
        if is_cancellation(outcome):
            self.stats.cancelled += 1
            kind = "cancelled"
        elif is_timeout(outcome):
            self.stats.timed_out += 1
            kind = "timed_out"
        elif isinstance(outcome, ActivityTaskFailed):
            self.stats.failed += 1
            kind = "failed_non_retryable" if outcome.failure.non_retryable else "failed"
        else:
            self.stats.completed += 1
            kind = "completed"
        metrics = self.metrics
        if metrics is None:
            return
        name = task.activity_type
        metrics.start_to_close.labels(name).observe(seconds)
        metrics.attempts.labels(name, kind).inc()
        if isinstance(outcome, ActivityTaskFailed) and kind != "cancelled":
            failure = outcome.failure
            retryable = "false" if failure.non_retryable else "true"
            metrics.failures.labels(name, failure.type, retryable).inc()

    def pending(self, task: ActivityTask) -> None:
        """An attempt raised CompleteAsync: its task token's holder reports the outcome."""
        self.stats.pending += 1
        if self.metrics is not None:
            self.metrics.attempts.labels(task.activity_type, "pending").inc()

    def cancel_received(self) -> None:
        """A cancel of this queue was read."""
        self.stats.cancels_received += 1
        self._cancel("received")

    def cancel_stopped(self) -> None:
        """A cancel stopped an attempt running here."""
        self._cancel("stopped")

    def skipped(self) -> None:
        """A task was not started: it was cancelled before."""
        self.stats.skipped += 1
        self._cancel("skipped")

    def dead_lettered(self, reason: str) -> None:
        """A task record went to the DLQ for ``reason``."""
        self.stats.dead_lettered += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels("activity_worker", dlq_reason_label(reason)).inc()

    def sample(
        self,
        lags: Mapping[int, int],
        running: int,
        waiting: int,
        paused_types: Iterable[str],
        held: Mapping[str, int],
    ) -> None:
        """Set the gauges: lag per partition, attempts running and waiting, paused types
        and the tasks held for them (series of what is gone are removed)."""
        metrics = self.metrics
        if metrics is None:
            return
        self._lag_exported = metrics.sample(
            self.task_queue, lags, self._lag_exported, running, waiting
        )
        self._held_exported = metrics.sample_pauses(
            self.task_queue, list(paused_types), held, self._held_exported
        )

    def _cancel(self, action: str) -> None:
        if self.metrics is not None:
            self.metrics.cancels.labels(self.task_queue, action).inc()


def partition_lags(consumer: Consumer, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """Lag (end of log - position) of each of ``partitions`` that has both; none if the
    consumer cannot tell now."""
    lags: dict[int, int] = {}
    wanted = sorted(partitions)
    if not wanted:
        return lags
    try:
        positions = consumer.position([TopicPartition(topic, p) for p in wanted])
        for tp in positions:
            _, end = consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and end >= 0:
                lags[tp.partition] = max(0, end - tp.offset)
    except KafkaException as exc:
        log.debug("lag unknown this time: %s", exc)
    return lags
