"""How an activity worker counts what its attempts end in: its stats and the exported
metrics (a real registry, read back as a scrape would)."""

from __future__ import annotations

from orchestrator.converter import Payload
from orchestrator.engine.events import Failure
from orchestrator.engine.failures import timeout_failure
from orchestrator.metrics import SagaMetrics
from orchestrator.serde.records import ActivityTask, ActivityTaskCompleted, ActivityTaskFailed
from orchestrator.worker.activity_metrics import ActivityCounts
from orchestrator.worker.activity_runner import ActivityOutcome, cancelled_failure

TASK = ActivityTask(
    workflow_id="wf", run_id="r", activity_seq=1, activity_type="pay", attempt=1,
    task_queue="q", scheduled_time=0,
)


def failed(failure: Failure) -> ActivityTaskFailed:
    return ActivityTaskFailed(workflow_id="wf", run_id="r", activity_seq=1, attempt=1,
                              failure=failure)


COMPLETED = ActivityTaskCompleted(
    workflow_id="wf", run_id="r", activity_seq=1, attempt=1,
    result=Payload(metadata={"encoding": b"binary/null"}, data=b""),
)


def attempts(metrics: SagaMetrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        "saga_activity_attempts_total", {"activity_type": "pay", "outcome": outcome}
    )


def failures(metrics: SagaMetrics, error_type: str, retryable: str) -> float | None:
    return metrics.registry.get_sample_value(
        "saga_activity_failures_total",
        {"activity_type": "pay", "error_type": error_type, "retryable": retryable},
    )


def test_each_outcome_is_counted_once_under_its_kind() -> None:
    metrics = SagaMetrics()
    counts = ActivityCounts("q", metrics.activities)
    outcomes: list[ActivityOutcome] = [
        COMPLETED,
        failed(Failure(message="no", type="Declined")),
        failed(Failure(message="never", type="Fraud", non_retryable=True)),
        failed(timeout_failure("start_to_close")),
        failed(cancelled_failure()),
    ]
    for outcome in outcomes:
        counts.finished(TASK, outcome, 0.25)
    stats = counts.stats
    assert (stats.completed, stats.failed, stats.timed_out, stats.cancelled) == (1, 2, 1, 1)
    for kind in ("completed", "failed", "failed_non_retryable", "timed_out", "cancelled"):
        assert attempts(metrics, kind) == 1, kind
    assert failures(metrics, "Declined", "true") == 1
    assert failures(metrics, "Fraud", "false") == 1
    # a cancel is not a failure of the activity: it has no failure series
    assert failures(metrics, cancelled_failure().type, "false") is None
    assert metrics.registry.get_sample_value(
        "saga_activity_start_to_close_seconds_count", {"activity_type": "pay"}
    ) == 5


def test_a_pending_attempt_is_neither_completed_nor_failed() -> None:
    metrics = SagaMetrics()
    counts = ActivityCounts("q", metrics.activities)
    counts.pending(TASK)
    assert counts.stats.pending == 1
    assert (counts.stats.completed, counts.stats.failed) == (0, 0)
    assert attempts(metrics, "pending") == 1
    assert attempts(metrics, "completed") is None


def test_starts_cancels_and_dead_letters() -> None:
    metrics = SagaMetrics()
    counts = ActivityCounts("q", metrics.activities)
    counts.started(TASK)
    counts.started(ActivityTask(
        workflow_id="wf", run_id="r", activity_seq=1, activity_type="pay", attempt=2,
        task_queue="q", scheduled_time=0,
    ))
    counts.cancel_received()
    counts.cancel_stopped()
    counts.skipped()
    counts.dead_lettered("truncated (ActivityTask): 3 bytes short")
    stats = counts.stats
    assert (stats.started, stats.cancels_received, stats.skipped, stats.dead_lettered) == (
        2, 1, 1, 1
    )
    registry = metrics.registry
    assert registry.get_sample_value(
        "saga_activity_retry_attempts_total", {"activity_type": "pay"}
    ) == 1
    assert registry.get_sample_value(
        "saga_activity_schedule_to_start_seconds_count", {"activity_type": "pay"}
    ) == 2
    for action in ("received", "stopped", "skipped"):
        assert registry.get_sample_value(
            "saga_activity_cancels_total", {"task_queue": "q", "action": action}
        ) == 1, action
    dead = registry.get_sample_value(
        "saga_dead_letters_total", {"source": "activity_worker", "reason": "undecodable_truncated"}
    )
    assert dead == 1


def test_gauges_drop_what_is_gone() -> None:
    metrics = SagaMetrics()
    counts = ActivityCounts("q", metrics.activities)
    counts.sample({0: 5, 1: 0}, running=3, waiting=7, paused_types=["pay"], held={"pay": 2})
    registry = metrics.registry
    assert registry.get_sample_value(
        "saga_activity_consumer_lag", {"task_queue": "q", "partition": "0"}
    ) == 5
    assert registry.get_sample_value("saga_activity_in_flight", {"task_queue": "q"}) == 3
    assert registry.get_sample_value("saga_activity_buffered", {"task_queue": "q"}) == 7
    assert registry.get_sample_value(
        "saga_activity_held", {"task_queue": "q", "activity_type": "pay"}
    ) == 2
    counts.sample({1: 4}, running=0, waiting=0, paused_types=[], held={})
    assert registry.get_sample_value(
        "saga_activity_consumer_lag", {"task_queue": "q", "partition": "0"}
    ) is None
    assert registry.get_sample_value(
        "saga_activity_type_paused", {"task_queue": "q", "activity_type": "pay"}
    ) is None


def test_without_metrics_only_the_stats_count() -> None:
    counts = ActivityCounts("q", None)
    counts.finished(TASK, COMPLETED, 0.1)
    counts.dead_lettered("x")
    counts.sample({0: 1}, running=1, waiting=1, paused_types=["pay"], held={"pay": 1})
    assert (counts.stats.completed, counts.stats.dead_lettered) == (1, 1)
