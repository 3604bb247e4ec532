"""A task handed over in process to an activity worker that stops before starting it
(orchestrator/worker/task_handoff.py): the worker sends it to the queue, where another
worker runs it, once, before its start-to-close timer would have retried it.

The worker under test holds its event loop with a blocking call in an async activity:
while it does, the engine of the same process hands it a second run's task, and the
worker is told to stop, so the handed task is still in its inbox when its loop ends.
What a user checks: the task on ``<prefix>.tasks.<queue>``, the second run's result,
and that its history has no failed attempt.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from orchestrator.worker.shard.records import headers_of
from orchestrator.worker.task_handoff import TaskHandoff
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "handoff-leave"
#: the longest a handed task may have; also how late the timer would retry a lost one
_TIMED = timedelta(seconds=10)
FAST = ActivityWorkerOptions(
    group_watch_interval_s=None, session_timeout_ms=6000, drain_timeout_s=20.0
)

_loop_held = threading.Event()
_release_loop = threading.Event()
_runs: list[str] = []


@activity.defn(name="handoff_leave.hold_the_loop")
async def hold_the_loop(label: str) -> str:
    """Blocks the worker's event loop (a blocking call inside an async activity) until
    the test lets it go: nothing else of that worker runs meanwhile."""
    _loop_held.set()
    _release_loop.wait(60)
    return f"{label} held"


@activity.defn(name="handoff_leave.step")
async def step(label: str) -> str:
    _runs.append(activity.info().idempotency_key)
    return f"{label}+"


@workflow.defn(name="handoff_leave.holder")
async def holder(ctx: workflow.WorkflowContext, label: str) -> str:
    return await ctx.execute_activity(hold_the_loop, label, task_queue=QUEUE, start_to_close=_TIMED)


@workflow.defn(name="handoff_leave.one_step")
async def one_step(ctx: workflow.WorkflowContext, label: str) -> str:
    return await ctx.execute_activity(step, label, task_queue=QUEUE, start_to_close=_TIMED)


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s}s"
        time.sleep(0.02)


def test_a_handed_task_a_stopping_worker_had_not_started_runs_on_another(
    kafka: providers.KafkaHandle,
) -> None:
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
    prefix = f"t{uuid.uuid4().hex[:10]}"
    layout = TopicLayout(prefix=prefix, shards=SHARDS)
    ensure_topics(AdminClient(config), layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{prefix}-engine", transaction_timeout_ms=5000)
    handoff = TaskHandoff()
    tag = uuid.uuid4().hex[:8]
    second = f"leave-{tag}"
    with (
        EngineWorker(config, layout, [holder, one_step], options=options, handoff=handoff),
        Client(config, layout=layout) as client,
    ):
        first = ActivityWorker(
            config, QUEUE, [hold_the_loop, step], layout=layout, options=FAST, handoff=handoff
        ).start()
        try:
            # the first task goes through the queue (the worker fetched nothing lately);
            # fetching it wakes the worker for a second, in which tasks are handed over
            held = client.start(holder, tag, id=f"holder-{tag}", task_queue=QUEUE)
            assert _loop_held.wait(30), "the first task did not start"
            handle = client.start(one_step, tag, id=second, task_queue=QUEUE)

            def handed() -> bool:
                first._inbox.wake()  # awake as if its loop ran: however slow the engine is
                return first._inbox.handed == 1

            _wait(handed, 10, "the second run's task handed over")
            first.stop()  # while its loop is held: the handed task is still in the inbox
        finally:
            _release_loop.set()
            first.join(30)
        assert first.error is None
        assert first.stats.started == 1, "the stopping worker started only the first task"

        wire = WireFormat()
        tasks = [
            wire.decode_task(headers_of(m), m.value()).record
            for m in read_topic(config, layout.task_queue(QUEUE), SHARDS, timeout_s=10)
        ]
        queued = [t for t in tasks if t.workflow_id == second]
        assert len(queued) == 1, "the handed task was not sent to the queue"
        assert queued[0].activity_type == "handoff_leave.step"

        with ActivityWorker(config, QUEUE, [hold_the_loop, step], layout=layout, options=FAST):
            assert handle.result(timeout=9) == f"{tag}+"
            assert held.result(timeout=15) == f"{tag} held"
        assert len(_runs) == 1, "the handed task ran once"
        events = client.fetch_history(second, timeout=15).events
        assert not [e for e in events if isinstance(e, ev.ActivityAttemptFailed)], (
            "the start-to-close timer retried it: it was lost, not sent to the queue"
        )
