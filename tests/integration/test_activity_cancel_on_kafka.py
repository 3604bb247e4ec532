"""Cancelling a running activity on Kafka: a workflow cancelled through the client
stops the attempt it was waiting for at the worker that runs it.

An async activity that sleeps without heartbeating gets ``CancelledError`` at its
await; a sync one sees ``activity.is_cancelled()`` turn True. The run closes
CANCELLED, and a late outcome of the attempt (here: a completion by its task token)
changes nothing. A task cancelled before any worker started it is never run.

One deployment (engine worker, activity worker) serves the module; the tests of
tasks that wait for a worker start their own.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.exceptions import (
    ActivityCancelledError,
    WorkflowClosedError,
    WorkflowFailedError,
)
from orchestrator.flow.dispatcher import Dispatcher
from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.metrics import SagaMetrics
from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.flow_helpers import configure
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "cancellable"
LATER = "cancellable-later"  # no worker until the test starts one
ONE_AT_A_TIME = "cancellable-narrow"  # a worker that runs one attempt at a time
CONTROLLED = "cancellable-flow"  # flow-controlled: tasks go through a dispatcher
THROTTLED = "cancellable-slow"  # flow-controlled, one task per 4 s


@dataclass
class Seen:
    """What an activity attempt did, by tag (written from the worker's threads)."""

    started: float | None = None
    cancelled: float | None = None
    token: str = ""


_seen: dict[str, Seen] = {}
_lock = threading.Lock()


def _note(tag: str, **what: Any) -> None:
    with _lock:
        seen = _seen.setdefault(tag, Seen())
        for name, value in what.items():
            setattr(seen, name, value)


def seen(tag: str) -> Seen:
    with _lock:
        return _seen.get(tag) or Seen()


@activity.defn(name="cancel.sleep_async")
async def sleep_async(tag: str) -> str:
    _note(tag, started=time.monotonic(), token=activity.info().task_token)
    try:
        await asyncio.sleep(60)  # no heartbeat: only the cancel channel can stop this
    except asyncio.CancelledError:
        _note(tag, cancelled=time.monotonic())
        raise
    return "slept"


@activity.defn(name="cancel.poll_sync")
def poll_sync(tag: str) -> str:
    _note(tag, started=time.monotonic(), token=activity.info().task_token)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if activity.is_cancelled():
            _note(tag, cancelled=time.monotonic())
            try:
                activity.heartbeat("after the cancel")
            except ActivityCancelledError:
                return "late result"  # reported as a cancellation all the same
            return "heartbeat did not raise"
        time.sleep(0.01)
    return "never cancelled"


@dataclass(frozen=True)
class Hold:
    kind: str  # "async" or "sync"
    tag: str
    queue: str = QUEUE


@workflow.defn(name="cancel.hold")
async def hold(ctx: workflow.WorkflowContext, req: Hold) -> str:
    options: dict[str, Any] = {"task_queue": req.queue, "start_to_close": timedelta(seconds=60)}
    if req.kind == "async":
        return await ctx.execute_activity(sleep_async, req.tag, **options)
    return await ctx.execute_activity(poll_sync, req.tag, **options)


@dataclass(frozen=True)
class Deployment:
    kafka_config: dict[str, Any]
    layout: TopicLayout
    client: Client
    worker: ActivityWorker
    metrics: SagaMetrics


@pytest.fixture(scope="module")
def deployment(kafka: providers.KafkaHandle) -> Iterator[Deployment]:
    config = {"bootstrap.servers": kafka.bootstrap_servers}
    prefix = f"t{uuid.uuid4().hex[:10]}"
    layout = TopicLayout(prefix=prefix, shards=SHARDS)
    ensure_topics(AdminClient(config), layout, [QUEUE, LATER, ONE_AT_A_TIME])
    configure(config, layout, FlowConfig(queue=CONTROLLED, rate=100.0, burst=5))
    configure(config, layout, FlowConfig(queue=THROTTLED, rate=0.25, burst=1))
    options = ProcessorOptions(worker_id=f"{prefix}-engine", transaction_timeout_ms=5000)
    metrics = SagaMetrics()
    with (
        EngineWorker(config, layout, [hold], options=options, flow_control=True),
        ActivityWorker(
            config, QUEUE, [sleep_async, poll_sync], layout=layout, metrics=metrics.activities
        ) as worker,
        Client(config, layout=layout) as client,
    ):
        yield Deployment(config, layout, client, worker, metrics)


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _cancelled_run(d: Deployment, workflow_id: str) -> list[ev.Event]:
    """Wait for the run to close CANCELLED; its history."""
    with pytest.raises(WorkflowFailedError) as failed:
        d.client.get_handle(workflow_id, result_type=str).result(timeout=15)
    assert failed.value.status == "CANCELLED"
    return d.client.fetch_history(workflow_id, timeout=15).events


def _metric(d: Deployment, name: str, **labels: str) -> float:
    value = d.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_a_cancelled_workflow_stops_its_running_activity(d_kind: tuple[Deployment, str]) -> None:
    d, kind = d_kind
    tag = f"{kind}-{uuid.uuid4().hex[:8]}"
    workflow_id = f"hold-{tag}"
    handle = d.client.start(hold, Hold(kind, tag), id=workflow_id, task_queue=QUEUE)
    _wait(lambda: seen(tag).started is not None, 15, "the activity to start")
    stopped_before = d.worker.stats.cancelled

    asked = time.monotonic()
    handle.cancel("the customer gave up")
    _wait(lambda: seen(tag).cancelled is not None, 5, "the activity to see its cancel")
    latency = (seen(tag).cancelled or 0) - asked
    print(f"{kind} activity saw its cancel {latency * 1000:.0f} ms after client.cancel()")
    assert latency < 2.0

    events = _cancelled_run(d, workflow_id)
    assert any(isinstance(e, ev.ActivityCancelRequested) for e in events)
    assert not any(
        isinstance(e, ev.ActivityCompleted | ev.ActivityFailed | ev.ActivityAttemptFailed)
        for e in events
    )
    _wait(lambda: d.worker.stats.cancelled > stopped_before, 5, "the cancelled outcome")
    assert _metric(d, "saga_activity_attempts_total", activity_type=(
        "cancel.sleep_async" if kind == "async" else "cancel.poll_sync"
    ), outcome="cancelled") >= 1
    assert _metric(d, "saga_activity_cancels_total", task_queue=QUEUE, action="stopped") >= 1

    # a late outcome of the abandoned attempt is refused and changes nothing
    with pytest.raises(WorkflowClosedError, match="CANCELLED"):
        d.client.complete_activity(seen(tag).token, "too late")
    after = d.client.fetch_history(workflow_id, timeout=15).events
    assert [type(e) for e in after] == [type(e) for e in events]
    assert d.client.get_handle(workflow_id, result_type=str).describe().status.name == "CANCELLED"


@pytest.fixture(params=["async", "sync"])
def d_kind(request: pytest.FixtureRequest, deployment: Deployment) -> tuple[Deployment, str]:
    return deployment, str(request.param)


def test_a_task_cancelled_before_any_worker_took_it_never_runs(deployment: Deployment) -> None:
    d = deployment
    tag = f"later-{uuid.uuid4().hex[:8]}"
    workflow_id = f"hold-{tag}"
    handle = d.client.start(hold, Hold("async", tag, LATER), id=workflow_id, task_queue=QUEUE)
    _wait(
        lambda: any(
            isinstance(e, ev.ActivityScheduled)
            for e in d.client.fetch_history(workflow_id, timeout=15).events
        ),
        15,
        "the activity to be scheduled",
    )
    received_before = d.worker.stats.cancels_received
    handle.cancel()
    _cancelled_run(d, workflow_id)
    time.sleep(0.3)
    assert d.worker.stats.cancels_received == received_before  # another queue's cancel

    # the worker starts after the cancel: it reads it back before starting any task
    with ActivityWorker(d.kafka_config, LATER, [sleep_async], layout=d.layout) as late:
        _wait(lambda: late.stats.skipped >= 1, 15, "the task to be skipped")
        time.sleep(0.3)
        assert late.stats.started == 0
    assert seen(tag).started is None


def test_a_task_cancelled_while_it_waits_for_a_slot_never_runs(deployment: Deployment) -> None:
    d = deployment
    busy, waiting = f"busy-{uuid.uuid4().hex[:8]}", f"waits-{uuid.uuid4().hex[:8]}"
    options = ActivityWorkerOptions(max_in_flight=1)
    with ActivityWorker(
        d.kafka_config, ONE_AT_A_TIME, [sleep_async], layout=d.layout, options=options
    ) as narrow:
        first = d.client.start(
            hold, Hold("async", busy, ONE_AT_A_TIME), id=f"hold-{busy}", task_queue=QUEUE
        )
        _wait(lambda: seen(busy).started is not None, 15, "the first activity to start")
        second = d.client.start(
            hold, Hold("async", waiting, ONE_AT_A_TIME), id=f"hold-{waiting}", task_queue=QUEUE
        )
        _wait(lambda: narrow.stats.received >= 2, 15, "the second task to be fetched")
        second.cancel()
        _cancelled_run(d, f"hold-{waiting}")
        _wait(lambda: narrow.stats.cancels_received >= 1, 5, "the cancel to reach the worker")
        first.cancel()  # frees the slot
        _cancelled_run(d, f"hold-{busy}")
        _wait(lambda: narrow.stats.skipped >= 1, 5, "the waiting task to be skipped")
        assert narrow.stats.started == 1
    assert seen(waiting).started is None
    assert seen(busy).cancelled is not None


def test_a_running_attempt_on_a_flow_controlled_queue_is_cancelled_too(
    deployment: Deployment,
) -> None:
    d = deployment
    tag = f"flow-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    dispatcher = threading.Thread(
        target=Dispatcher(d.kafka_config, d.layout, CONTROLLED, cycle_s=0.01).run, args=(stop,)
    )
    dispatcher.start()
    try:
        with ActivityWorker(d.kafka_config, CONTROLLED, [sleep_async], layout=d.layout) as worker:
            handle = d.client.start(
                hold, Hold("async", tag, CONTROLLED), id=f"hold-{tag}", task_queue=QUEUE
            )
            _wait(lambda: seen(tag).started is not None, 20, "the activity to start")
            asked = time.monotonic()
            handle.cancel()
            _wait(lambda: seen(tag).cancelled is not None, 5, "the activity to see its cancel")
            assert (seen(tag).cancelled or 0) - asked < 2.0
            _cancelled_run(d, f"hold-{tag}")
            _wait(lambda: worker.stats.cancelled >= 1, 5, "the cancelled outcome")
    finally:
        stop.set()
        dispatcher.join(30)
    # the task went through the queue's backlog, as every task of a controlled queue
    assert len(read_topic(d.kafka_config, d.layout.backlog(CONTROLLED), 1)) == 1


def test_terminating_a_run_stops_its_running_activity(deployment: Deployment) -> None:
    d = deployment
    tag = f"term-{uuid.uuid4().hex[:8]}"
    workflow_id = f"hold-{tag}"
    handle = d.client.start(hold, Hold("async", tag), id=workflow_id, task_queue=QUEUE)
    _wait(lambda: seen(tag).started is not None, 15, "the activity to start")
    handle.terminate("operator")
    _wait(lambda: seen(tag).cancelled is not None, 5, "the activity to see its cancel")
    with pytest.raises(WorkflowFailedError) as failed:
        handle.result(timeout=15)
    assert failed.value.status == "TERMINATED"
    events = d.client.fetch_history(workflow_id, timeout=15).events
    assert not any(isinstance(e, ev.ActivityCancelRequested) for e in events)  # none recorded


def test_a_task_cancelled_in_a_dispatchers_backlog_is_never_released(
    deployment: Deployment,
) -> None:
    d = deployment
    first, second = f"first-{uuid.uuid4().hex[:8]}", f"second-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    dispatcher = Dispatcher(d.kafka_config, d.layout, THROTTLED, cycle_s=0.01)
    thread = threading.Thread(target=dispatcher.run, args=(stop,))
    thread.start()
    try:
        with ActivityWorker(d.kafka_config, THROTTLED, [sleep_async], layout=d.layout) as worker:
            running = d.client.start(  # takes the bucket's one token
                hold, Hold("async", first, THROTTLED), id=f"hold-{first}", task_queue=QUEUE
            )
            _wait(lambda: seen(first).started is not None, 20, "the first activity to start")
            waiting = d.client.start(  # waits about 4 s for the next token
                hold, Hold("async", second, THROTTLED), id=f"hold-{second}", task_queue=QUEUE
            )
            waiting.cancel()
            _cancelled_run(d, f"hold-{second}")
            _wait(lambda: dispatcher.dropped >= 1, 15, "the dispatcher to drop the task")
            time.sleep(0.5)
            assert worker.stats.received == 1  # only the first task was released
            running.cancel()
            _cancelled_run(d, f"hold-{first}")
    finally:
        stop.set()
        thread.join(30)
    assert seen(second).started is None
