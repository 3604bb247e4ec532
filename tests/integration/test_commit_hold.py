"""The engine's commit hold (``ProcessorOptions.commit_hold_ms``), seen from the topics.

A batch that only writes history (a step's outcome and the next step's schedule, whose
task went out early) waits up to the hold for more before it is committed; a batch with
a record someone waits for (the run's close and its RESULT reply) is committed at once
and takes the held records with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from orchestrator.worker.shard.records import headers_of
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "held"
WIRE = WireFormat()
HOLD_MS = 5000.0

second_started = threading.Event()
release_second = threading.Event()


@activity.defn(name="hold.first")
def first(label: str) -> str:
    return f"first {label}"


@activity.defn(name="hold.second")
def second(label: str) -> str:
    second_started.set()
    if not release_second.wait(60):
        raise RuntimeError("never released")
    return f"second {label}"


@workflow.defn(name="hold.two_steps")
async def two_steps(ctx: workflow.WorkflowContext, label: str) -> str:
    a = await ctx.execute_activity(first, label, start_to_close=timedelta(seconds=60))
    b = await ctx.execute_activity(second, label, start_to_close=timedelta(seconds=60))
    return f"{a}, {b}"


def _completed_activities(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> int:
    count = 0
    for msg in read_topic(config, layout.history, SHARDS):
        key = msg.key() or b""
        if not key.startswith(f"{workflow_id}/".encode()) or b"/snapshot" in key:
            continue
        event = WIRE.decode_event(headers_of(msg), msg.value()).record.event
        count += isinstance(event, ev.ActivityCompleted)
    return count


@pytest.fixture
def deployment(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, request: Any
) -> Iterator[tuple[TopicLayout, Client]]:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    options = ProcessorOptions(
        worker_id=f"{topic_prefix}-engine",
        transaction_timeout_ms=10_000,
        commit_hold_ms=request.param,
    )
    second_started.clear()
    release_second.clear()
    with (
        EngineWorker(kafka_config, layout, [two_steps], options=options),
        ActivityWorker(kafka_config, QUEUE, [first, second], layout=layout),
        Client(kafka_config, layout=layout) as client,
    ):
        yield layout, client
        release_second.set()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("deployment", [HOLD_MS], indirect=True)
def test_a_history_only_batch_waits_and_the_close_commits_at_once(
    kafka_config: dict[str, Any], deployment: tuple[TopicLayout, Client]
) -> None:
    layout, client = deployment
    handle = client.start(two_steps, "x", id="held-1", task_queue=QUEUE)
    assert second_started.wait(60), "the second step's task never reached the worker"
    reached = time.monotonic()
    # The first step's outcome and the second's schedule are decided; only the hold
    # keeps them from history (the second's task went out early, so it runs already).
    assert _completed_activities(kafka_config, layout, "held-1") == 0
    deadline = reached + HOLD_MS / 1000 + 20
    while _completed_activities(kafka_config, layout, "held-1") == 0:
        assert time.monotonic() < deadline, "the held batch was never committed"
        time.sleep(0.1)
    assert time.monotonic() - reached > 1.0  # it did wait (for about the hold)

    released = time.monotonic()
    release_second.set()
    assert handle.result(timeout=60) == "first x, second x"
    # the close carries a reply someone waits for: no hold (it would take >= 5 s)
    assert time.monotonic() - released < HOLD_MS / 1000 - 1
    assert _completed_activities(kafka_config, layout, "held-1") == 2


@pytest.mark.timeout(180)
@pytest.mark.parametrize("deployment", [0.0], indirect=True)
def test_without_a_hold_every_batch_commits_at_once(
    kafka_config: dict[str, Any], deployment: tuple[TopicLayout, Client]
) -> None:
    layout, client = deployment
    handle = client.start(two_steps, "y", id="unheld-1", task_queue=QUEUE)
    assert second_started.wait(60), "the second step's task never reached the worker"
    reached = time.monotonic()
    while _completed_activities(kafka_config, layout, "unheld-1") == 0:
        assert time.monotonic() - reached < 4, "the first step's outcome was held"
        time.sleep(0.05)
    release_second.set()
    assert handle.result(timeout=60) == "first y, second y"
