"""``/metrics`` on real Kafka: an engine worker and an activity worker export their
metrics on one endpoint; a run with injected failures (an activity that fails once
then succeeds, a saga that compensates) moves the counters and histograms an
operator alerts on, and the lag gauges come back to 0 once the work is done."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.exceptions import ApplicationError, WorkflowFailedError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.metrics import SagaMetrics, serve
from orchestrator.retry import RetryPolicy
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions

pytestmark = pytest.mark.integration
SHARDS = 4
QUEUE = "metrics"
FAST_RETRY = RetryPolicy(initial=timedelta(milliseconds=50), max_attempts=5)


class FlakyDownstreamError(ConnectionError):
    """The downstream dropped the connection (retryable)."""


@activity.defn(name="metrics.flaky")
async def flaky(order: str) -> str:
    if activity.info().attempt == 1:
        raise FlakyDownstreamError(f"{order}: connection reset")
    return f"shipped:{order}"


@activity.defn(name="metrics.reserve")
async def reserve(order: str) -> str:
    return f"reserved:{order}"


@activity.defn(name="metrics.release")
async def release(order: str) -> None:
    return None


@activity.defn(name="metrics.charge")
async def charge(order: str) -> str:
    raise ApplicationError(f"{order}: card declined", type="CardDeclined", non_retryable=True)


@workflow.defn(name="metrics.ship")
async def ship(ctx: workflow.WorkflowContext, order: str) -> str:
    result: str = await ctx.execute_activity(flaky, order, retry=FAST_RETRY)
    return result


@workflow.defn(name="metrics.order")
async def order(ctx: workflow.WorkflowContext, order: str) -> str:
    saga = ctx.saga()
    await saga.step(reserve, order, compensate=release, retry=FAST_RETRY)
    await saga.step(charge, order, retry=FAST_RETRY)
    return "paid"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def wait_for(url: str, check: Callable[[Samples], bool], timeout_s: float, what: str) -> Samples:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(url)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            gauges = {k: v for k, v in samples.items() if "lag" in k[0] or "in_flight" in k[0]}
            raise AssertionError(f"timed out waiting for {what}: {gauges}")
        time.sleep(0.25)


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


@pytest.fixture
def endpoint(
    kafka_config: dict[str, Any], layout: TopicLayout, topic_prefix: str, tmp_path: Path
) -> Iterator[str]:
    """An engine worker and an activity worker in one process, metrics on one port."""
    metrics = SagaMetrics()
    server = serve(metrics.registry, "127.0.0.1", 0)
    options = ProcessorOptions(
        worker_id=f"{topic_prefix}-e", transaction_timeout_ms=5000, gauge_interval_s=0.2
    )
    engine = EngineWorker(
        kafka_config, layout, [ship, order], options=options, state_dir=tmp_path,
        metrics=metrics.engine,
    )  # fmt: skip
    activities = ActivityWorker(
        kafka_config, QUEUE, [flaky, reserve, release, charge], layout=layout,
        metrics=metrics.activities,
    )  # fmt: skip
    try:
        with engine, activities:
            yield f"http://127.0.0.1:{server.port}/metrics"
    finally:
        server.close()


def test_metrics_follow_retries_compensations_and_lag(
    endpoint: str, kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    wait_for(endpoint, lambda s: value(s, "saga_engine_shards", state="owned") == SHARDS, 60,
             "the engine to own every shard")  # fmt: skip
    with Client(kafka_config, layout=layout) as client:
        start = client.start
        shipped = [start(ship, f"s-{i}", id=f"ship-{i}", task_queue=QUEUE) for i in range(3)]
        ordered = [start(order, f"o-{i}", id=f"order-{i}", task_queue=QUEUE) for i in range(2)]
        assert [h.result(timeout=60) for h in shipped] == [f"shipped:s-{i}" for i in range(3)]
        for handle in ordered:
            with pytest.raises(WorkflowFailedError):
                handle.result(timeout=60)

    def settled(s: Samples) -> bool:
        engine_lag = series(s, "saga_engine_consumer_lag")
        task_lag = series(s, "saga_activity_consumer_lag")
        return (
            len(engine_lag) == SHARDS and not any(engine_lag.values())
            and bool(task_lag) and not any(task_lag.values())
            and value(s, "saga_activity_in_flight", task_queue=QUEUE) == 0
        )  # fmt: skip

    s = wait_for(endpoint, settled, 30, "lag back to 0 on every shard and task partition")

    # runs: started and closed by type and final status; the saga's compensation is seen
    assert value(s, "saga_workflow_runs_started_total", workflow_type="metrics.ship") == 3
    assert value(s, "saga_workflow_runs_started_total", workflow_type="metrics.order") == 2
    closed = "saga_workflow_runs_closed_total"
    assert value(s, closed, workflow_type="metrics.ship", status="completed") == 3
    assert value(s, closed, workflow_type="metrics.order", status="failed") == 2
    compensated = "saga_workflow_runs_compensated_total"
    assert value(s, compensated, workflow_type="metrics.order", status="failed") == 2
    assert not series(s, compensated).keys() - {
        frozenset({("workflow_type", "metrics.order"), ("status", "failed")})
    }, "a run that never compensated was counted as compensated"

    # activity attempts: the flaky one failed once per run with a retryable error, then
    # its retry completed; the card decline failed for good, the release ran
    attempts = "saga_activity_attempts_total"
    assert value(s, attempts, activity_type="metrics.flaky", outcome="failed") == 3
    assert value(s, attempts, activity_type="metrics.flaky", outcome="completed") == 3
    assert value(s, attempts, activity_type="metrics.charge", outcome="failed_non_retryable") == 2
    assert value(s, attempts, activity_type="metrics.release", outcome="completed") == 2
    failures = "saga_activity_failures_total"
    assert value(s, failures, activity_type="metrics.flaky", error_type="FlakyDownstreamError",
                 retryable="true") == 3  # fmt: skip
    assert value(s, failures, activity_type="metrics.charge", error_type="CardDeclined",
                 retryable="false") == 2  # fmt: skip
    assert value(s, "saga_activity_retry_attempts_total", activity_type="metrics.flaky") == 3
    assert value(s, "saga_activity_retry_attempts_total", activity_type="metrics.charge") == 0

    # histograms: one observation per attempt, per command decided, per transaction
    for name in ("saga_activity_schedule_to_start_seconds", "saga_activity_start_to_close_seconds"):
        assert value(s, f"{name}_count", activity_type="metrics.flaky") == 6
        assert value(s, f"{name}_bucket", activity_type="metrics.flaky", le="+Inf") == 6
    # 5 starts, 6 flaky + 4 reserve/charge + 2 release outcomes at least
    assert value(s, "saga_engine_decision_seconds_count") >= 17
    assert value(s, "saga_engine_commands_total") >= value(s, "saga_engine_decision_seconds_count")
    assert value(s, "saga_engine_commit_seconds_count") >= 1
    assert value(s, "saga_engine_commit_seconds_sum") > 0
    assert value(s, "saga_engine_restore_seconds_count") == SHARDS
    assert value(s, "saga_engine_transactions_aborted_total") == 0

    # per-shard gauges: every shard reports, nothing parked, no dead letters
    for name in ("saga_engine_executions_cached", "saga_engine_parked_runs",
                 "saga_engine_pending_timers"):  # fmt: skip
        assert len(series(s, name)) == SHARDS, name
    assert not any(series(s, "saga_engine_parked_runs").values())
    assert not series(s, "saga_dead_letters_total")
