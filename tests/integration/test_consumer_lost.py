"""A worker whose consumer stops being a member of its group, with no word from
librdkafka, joins again and goes on serving (orchestrator/worker/group_watch.py).

A fenced consumer says so once, and the worker replaces it (test_worker_fencing.py);
were that word lost, the worker would keep a consumer that fetches nothing and own
nothing for good. Here the engine's and the activity worker's consumers leave their
groups behind the workers' backs (an ``unsubscribe`` from the test's thread: the
consumer lives on, outside the group, and its worker is not told). Each worker's
group watch must find its member gone and join again with a new consumer; a saga
started while neither worker owns anything must then finish, once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "consumer-lost"
#: the session timeout of both consumers (the broker's minimum), and how often each
#: watch looks: a member gone for two session timeouts is replaced
SESSION_MS = 6_000
LOOK_S = 1.0
#: the saga started while both consumers are out of their groups finishes within this
#: long: the watches' 12 s grace, then the rejoins and the engine's restore
SERVE_BOUND_S = 60.0

_runs: list[str] = []


@activity.defn(name="consumer_lost.step")
async def step(label: str) -> str:
    _runs.append(activity.info().idempotency_key)
    return f"{label}+"


@workflow.defn(name="consumer_lost.one_step")
async def one_step(ctx: workflow.WorkflowContext, label: str) -> str:
    return await ctx.execute_activity(step, label, task_queue=QUEUE)


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s}s"
        time.sleep(0.05)


@pytest.mark.timeout(180)
def test_workers_whose_consumers_left_their_groups_join_again(
    kafka: providers.KafkaHandle,
) -> None:
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
    prefix = f"t{uuid.uuid4().hex[:10]}"
    layout = TopicLayout(prefix=prefix, shards=SHARDS)
    ensure_topics(AdminClient(config), layout, [QUEUE])
    engine_options = ProcessorOptions(
        worker_id=f"{prefix}-engine",
        transaction_timeout_ms=5000,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=500,
        group_watch_interval_s=LOOK_S,
    )
    activity_options = ActivityWorkerOptions(
        group_watch_interval_s=LOOK_S, session_timeout_ms=SESSION_MS
    )
    engine = EngineWorker(config, layout, [one_step], options=engine_options)
    tag = uuid.uuid4().hex[:8]
    with (
        engine,
        ActivityWorker(config, QUEUE, [step], layout=layout, options=activity_options) as worker,
        Client(config, layout=layout) as client,
    ):
        processor = engine.processor
        before = client.start(one_step, "before", id=f"before-{tag}", task_queue=QUEUE)
        assert before.result(timeout=60) == "before+"

        engine_consumer = processor._consumer
        queue_consumer = worker._queue.current
        assert queue_consumer is not None
        engine_consumer.unsubscribe()  # the workers are not told
        queue_consumer.unsubscribe()
        _wait(lambda: processor.owned_shards == [], 30, "the engine kept its shards")
        _wait(lambda: not worker._queue.offsets.assigned, 30, "the worker kept its partitions")

        began = time.monotonic()
        after = client.start(one_step, "after", id=f"after-{tag}", task_queue=QUEUE)
        assert after.result(timeout=SERVE_BOUND_S) == "after+"
        served_s = time.monotonic() - began

        assert processor._consumer is not engine_consumer, "the engine's consumer was kept"
        assert worker._queue.current is not queue_consumer, "the worker's consumer was kept"
        assert processor.metrics.consumers_replaced == 1
        assert processor.owned_shards == list(range(SHARDS))
        events = client.fetch_history(f"after-{tag}", timeout=15).events
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert sum(isinstance(e, ev.WorkflowCompleted) for e in events) == 1
        assert len([k for k in _runs if k.startswith(f"after-{tag}/")]) == 1, _runs
        print(f"served {served_s:.1f}s after both consumers left")
