"""An activity's ``next_retry_delay`` overrides its retry policy's backoff, on Kafka."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.retry import RetryPolicy
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "backoff"
ASKED_MS = 2_000
POLICY = RetryPolicy(initial=timedelta(milliseconds=100), max_attempts=3)
_attempts: list[float] = []  # wall time each attempt started


@activity.defn(name="backoff.busy_once")
async def busy_once(n: int) -> int:
    _attempts.append(time.time())
    if activity.info().attempt == 1:
        raise ApplicationError(
            "downstream busy", type="Busy", next_retry_delay=timedelta(milliseconds=ASKED_MS)
        )
    return n + 1


@workflow.defn(name="backoff.one_step")
async def one_step(ctx: workflow.WorkflowContext, n: int) -> int:
    return await ctx.execute_activity(busy_once, n, retry=POLICY)


def test_the_activitys_retry_delay_replaces_the_policys_backoff(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    _attempts.clear()
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-engine", transaction_timeout_ms=5000)
    with (
        EngineWorker(kafka_config, layout, [one_step], options=options),
        ActivityWorker(kafka_config, QUEUE, [busy_once], layout=layout),
        Client(kafka_config, layout=layout) as client,
    ):
        assert client.start(one_step, 1, id="busy-1", task_queue=QUEUE).result(timeout=40) == 2
        events = client.fetch_history("busy-1", timeout=20).events
    [failed] = [e for e in events if isinstance(e, ev.ActivityAttemptFailed)]
    assert failed.failure.type == "Busy"
    assert failed.next_retry_at - failed.time == ASKED_MS, "the activity's delay, not 100 ms"
    assert len(_attempts) == 2
    assert _attempts[1] - _attempts[0] >= ASKED_MS / 1000
