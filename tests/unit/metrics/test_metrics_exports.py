"""The metrics module: its own registry per process, bounded DLQ reason labels, and a
parked-runs gauge that follows parks and unparks."""

from __future__ import annotations

import click
import httpx
import pytest
from prometheus_client import REGISTRY

from orchestrator.cli import _metrics_endpoint
from orchestrator.engine.events import CompensationStarted, WorkflowFailed
from orchestrator.engine.events import Failure as EventFailure
from orchestrator.metrics import DLQ_REASONS, SagaMetrics, dlq_reason_label, serve
from orchestrator.serde.errors import DecodeFailure, RecordDecodeError
from orchestrator.status import WorkflowStatus
from orchestrator.worker.shard.stats import ShardStats


def test_two_processes_worth_of_metrics_do_not_clash() -> None:
    first, second = SagaMetrics(), SagaMetrics()
    first.engine.runs_started.labels("t").inc()
    _ = first.activities, second.engine, second.activities
    name, labels = "saga_workflow_runs_started_total", {"workflow_type": "t"}
    assert first.registry.get_sample_value(name, labels) == 1
    assert second.registry.get_sample_value(name, labels) is None
    assert REGISTRY.get_sample_value(name, labels) is None


def test_dlq_reasons_map_to_a_fixed_set() -> None:
    decode = RecordDecodeError(DecodeFailure.TRUNCATED, "3 bytes short", "saga.command.start.v1")
    cases = {
        str(decode): "undecodable_truncated",
        "workflow is parked: expected ScheduleActivityTask": "parked",
        "unknown workflow type 'x'; this worker knows ['y']": "unknown_workflow_type",
        "handler error: KeyError: 'a'": "handler_error",
        "command has no key (the workflow id)": "no_key",
        "command key is not UTF-8": "bad_key",
        "something new": "other",
    }
    for reason, label in cases.items():
        assert dlq_reason_label(reason) == label, reason
        assert label in DLQ_REASONS


def test_shard_stats_feed_runs_and_the_parked_gauge() -> None:
    metrics = SagaMetrics()
    stats = ShardStats(metrics=metrics.engine)
    stats.run_started("transfer")
    compensated = [CompensationStarted(seq=5, time=0, saga_id=1), WorkflowFailed(
        seq=6, time=0, failure=EventFailure(message="m", type="T"))]
    stats.run_closed("transfer", WorkflowStatus.FAILED, compensated)
    stats.run_closed("transfer", WorkflowStatus.COMPLETED, [])
    get = metrics.registry.get_sample_value
    failed = {"workflow_type": "transfer", "status": "failed"}
    assert get("saga_workflow_runs_closed_total", failed) == 1
    assert get("saga_workflow_runs_compensated_total",
               {"workflow_type": "transfer", "status": "failed"}) == 1  # fmt: skip
    assert get("saga_workflow_runs_compensated_total",
               {"workflow_type": "transfer", "status": "completed"}) is None  # fmt: skip
    stats.run_parked("w-1")
    stats.run_parked("w-2")
    stats.run_unparked("w-1")  # replayed after a deploy
    stats.run_unparked("w-3")  # never parked: nothing changes
    assert stats.parked_ids == {"w-2"} and stats.parked == 2


def test_the_endpoint_serves_the_registry_and_a_busy_port_is_a_usage_error() -> None:
    metrics = SagaMetrics()
    metrics.activities.attempts.labels("pay", "completed").inc()
    server = serve(metrics.registry, "127.0.0.1", 0)
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        assert 'saga_activity_attempts_total{activity_type="pay",outcome="completed"} 1.0' in text
        with pytest.raises(click.UsageError, match="cannot serve metrics"):
            _metrics_endpoint("127.0.0.1", server.port)
    finally:
        server.close()
    assert _metrics_endpoint("127.0.0.1", 0)[0] is None  # --metrics-port 0: no endpoint
