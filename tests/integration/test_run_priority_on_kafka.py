"""A run's priority and fairness key on a real broker: a workflow started with
priority 5 and fairness key "tenantA" has its activity released by a flow-controlled
queue's dispatcher with them (an activity that names neither), while a run started
without them dispatches as before; describe shows the run's."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.flow.dispatcher import Dispatcher
from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.flow_helpers import configure
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "prio-flow"
WIRE = WireFormat()


@activity.defn(name="prio.charge")
async def charge(order: str) -> str:
    return f"charged {order}"


@workflow.defn(name="prio.order")
async def order(ctx: workflow.WorkflowContext, order_id: str) -> str:
    result: str = await ctx.execute_activity(
        charge, order_id, task_queue=QUEUE, start_to_close=timedelta(seconds=30)
    )
    return result


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


def test_an_activity_is_released_with_the_runs_priority_and_fairness_key(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    configure(kafka_config, layout, FlowConfig(queue=QUEUE, rate=100.0, burst=5))
    options = ProcessorOptions(worker_id=f"{layout.prefix}-w", transaction_timeout_ms=5000)
    stop = threading.Event()
    dispatcher = threading.Thread(
        target=Dispatcher(kafka_config, layout, QUEUE, cycle_s=0.01).run, args=(stop,)
    )
    dispatcher.start()
    try:
        with (
            EngineWorker(kafka_config, layout, [order], options=options, flow_control=True),
            ActivityWorker(kafka_config, QUEUE, [charge], layout=layout),
            Client(kafka_config, layout=layout) as client,
        ):
            vip = client.start(order, "o-1", id="o-1", task_queue=QUEUE, priority=5,
                               fairness_key="tenantA")
            plain = client.start(order, "o-2", id="o-2", task_queue=QUEUE)
            assert vip.result(timeout=60) == "charged o-1"
            assert plain.result(timeout=60) == "charged o-2"
            described = vip.describe()
            assert (described.priority, described.fairness_key) == (5, "tenantA")
            assert (plain.describe().priority, plain.describe().fairness_key) == (0, "")
    finally:
        stop.set()
        dispatcher.join(30)
    released = [
        WIRE.decode_task(m.headers(), m.value()).record
        for m in read_topic(kafka_config, layout.task_queue(QUEUE), SHARDS)
    ]
    assert sorted((t.workflow_id, t.priority, t.fairness_key) for t in released) == [
        ("o-1", 5, "tenantA"), ("o-2", 0, ""),
    ]
    backlog = read_topic(kafka_config, layout.backlog(QUEUE), 1)
    assert len(backlog) == 2, "both went through the dispatcher"
