"""Local activities on real Kafka: run by the engine worker itself, recorded in history
like any activity, retried under their policy, and sent through the task queue when
the engine worker does not have them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.engine import events as ev
from orchestrator.engine.failures import timeout_failure
from orchestrator.exceptions import ApplicationError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.retry import RetryPolicy
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "local-q"
WIRE = WireFormat()
FAST_RETRY = RetryPolicy(initial=timedelta(milliseconds=200), max_attempts=5)

_calls: list[tuple[str, str, int]] = []  # (activity, idempotency key, attempt)
_lock = threading.Lock()


def _record(name: str) -> int:
    info = activity.info()
    with _lock:
        _calls.append((name, info.idempotency_key, info.attempt))
    return info.attempt


@activity.defn(name="local.add_one")
async def add_one(n: int) -> int:
    _record("add_one")
    return n + 1


@activity.defn(name="local.flaky_double")
def flaky_double(n: int) -> int:
    """Sync (runs in the engine's thread pool); fails its first attempt."""
    if _record("flaky_double") == 1:
        raise ApplicationError("first attempt fails")
    return n * 2


@activity.defn(name="local.slow_then_fast")
async def slow_then_fast(n: int) -> int:
    if _record("slow_then_fast") == 1:
        await asyncio.sleep(5)  # past the engine's local-attempt limit in the test
    return n + 100


@workflow.defn(name="local.three_steps")
async def three_steps(ctx: workflow.WorkflowContext, n: int) -> int:
    for _ in range(3):
        n = await ctx.execute_local_activity(add_one, n)
    return n


@workflow.defn(name="local.retried")
async def retried(ctx: workflow.WorkflowContext, n: int) -> int:
    n = await ctx.execute_local_activity(flaky_double, n, retry=FAST_RETRY)
    return await ctx.execute_local_activity(slow_then_fast, n, retry=FAST_RETRY)


WORKFLOWS = [three_steps, retried]


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    with _lock:
        _calls.clear()
    return layout


@pytest.fixture
def client(kafka_config: dict[str, Any], layout: TopicLayout) -> Iterator[Client]:
    with Client(kafka_config, layout=layout) as c:
        yield c


def engine(
    kafka_config: dict[str, Any], layout: TopicLayout, activities: list[Any], **kw: Any
) -> EngineWorker:
    options = ProcessorOptions(worker_id=f"{layout.prefix}-engine", transaction_timeout_ms=5000)
    return EngineWorker(
        kafka_config, layout, WORKFLOWS, options=options, activities=activities, **kw
    )


def history(config: dict[str, Any], layout: TopicLayout, wf_id: str) -> list[ev.Event]:
    """The events of the (only) run of ``wf_id``, in log order."""
    events, runs = [], set()
    for msg in read_topic(config, layout.history, SHARDS):
        if msg.value() is None:
            continue
        record = WIRE.decode_history(msg.headers() or [], msg.value()).record
        if isinstance(record, rec.WorkflowSnapshot) or record.workflow_id != wf_id:
            continue
        events.append(record.event)
        runs.add(record.run_id)
    assert len(runs) == 1
    return events


def test_local_steps_run_in_the_engine_and_are_recorded(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    with engine(kafka_config, layout, [add_one]):
        handle = client.start(three_steps, 10, id="local-1", task_queue=QUEUE)
        assert handle.result(timeout=30) == 13

    events = history(kafka_config, layout, "local-1")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    scheduled = [e for e in events if isinstance(e, ev.ActivityScheduled)]
    completed = [e for e in events if isinstance(e, ev.ActivityCompleted)]
    assert [e.activity_type for e in scheduled] == ["local.add_one"] * 3
    assert [e.attempt for e in completed] == [1, 1, 1]
    # the engine ran them: nothing went through the task queue
    assert read_topic(kafka_config, layout.task_queue(QUEUE), SHARDS) == []
    # each step got its own stable idempotency key: workflow id / run id / activity seq
    with engine(kafka_config, layout, [add_one]):
        run_id = handle.describe(timeout=30).run_id
    assert sorted(key for _, key, _ in _calls) == [f"local-1/{run_id}/{n}" for n in (1, 2, 3)]


def test_failed_and_timed_out_local_attempts_are_retried(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    worker = engine(kafka_config, layout, [flaky_double, slow_then_fast], local_max_attempt_s=0.5)
    with worker:
        handle = client.start(retried, 4, id="local-2", task_queue=QUEUE)
        assert handle.result(timeout=40) == 108

    events = history(kafka_config, layout, "local-2")
    failed = [e for e in events if isinstance(e, ev.ActivityAttemptFailed)]
    assert [(e.activity_seq, e.attempt) for e in failed] == [(1, 1), (2, 1)]
    assert "first attempt fails" in failed[0].failure.message
    assert failed[1].failure.type == timeout_failure("start_to_close").type
    completed = [e for e in events if isinstance(e, ev.ActivityCompleted)]
    assert [(e.activity_seq, e.attempt) for e in completed] == [(1, 2), (2, 2)]
    attempts = sorted((name, attempt) for name, _, attempt in _calls)
    assert attempts == [
        ("flaky_double", 1),
        ("flaky_double", 2),
        ("slow_then_fast", 1),
        ("slow_then_fast", 2),
    ]


def test_local_call_the_engine_cannot_run_goes_through_the_task_queue(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    with (
        engine(kafka_config, layout, []),
        ActivityWorker(kafka_config, QUEUE, [add_one], layout=layout),
    ):
        handle = client.start(three_steps, 0, id="local-3", task_queue=QUEUE)
        assert handle.result(timeout=40) == 3

    tasks = read_topic(kafka_config, layout.task_queue(QUEUE), SHARDS)
    assert len(tasks) == 3
    assert len(_calls) == 3
