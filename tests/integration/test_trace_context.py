"""A client's trace context on real Kafka: the engine carries the start's
``traceparent`` into every record of the run (history, activity tasks, the result
reply), the activity worker into its outcome, across a sleep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.log.headers import headers_of
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.executions import trace_of
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "traced"
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@activity.defn(name="traced.double")
async def double(n: int) -> int:
    return n * 2


@workflow.defn(name="traced.steps")
async def steps(ctx: workflow.WorkflowContext, n: int) -> int:
    n = await ctx.execute_activity(double, n)
    await ctx.sleep(timedelta(milliseconds=50))
    return await ctx.execute_activity(double, n)


def test_the_starts_trace_reaches_every_record_of_the_run(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-engine", transaction_timeout_ms=5000)
    with (
        EngineWorker(kafka_config, layout, [steps], options=options),
        ActivityWorker(kafka_config, QUEUE, [double], layout=layout),
        Client(kafka_config, layout=layout) as client,
    ):
        handle = client.start(steps, 3, id="traced-1", task_queue=QUEUE, traceparent=TRACE)
        assert handle.result(timeout=30) == 12

    def traces(topic: str) -> set[str | None]:
        return {
            trace_of(headers_of(m))
            for m in read_topic(kafka_config, topic, SHARDS)
            if m.value() is not None
        }

    assert traces(layout.task_queue(QUEUE)) == {TRACE}, "activity tasks"
    assert traces(layout.history) == {TRACE}, "every event and snapshot"
    assert traces(layout.commands) == {TRACE}, "the start and both activity outcomes"
    assert traces(layout.replies) == {TRACE}, "the START and RESULT replies"
