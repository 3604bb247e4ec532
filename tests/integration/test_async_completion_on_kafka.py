"""Async activity completion on Kafka: an activity hands out its task token and raises
``CompleteAsync``; the saga finishes with what the token's holder sends through the
client, the asyncio client, the HTTP API or ``saga activity``. A failure by token takes
the retry policy, or runs the saga's compensations. A stale token (an attempt that
timed out and was retried, or whose run closed) and a second completion are refused
with an error and change nothing; an attempt nobody completes times out by its
start-to-close timeout.

One deployment (engine worker, activity worker) serves the whole module; each test
has its own workflow ids.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import AsyncClient, Client
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.exceptions import (
    ActivityNotRunningError,
    WorkflowClosedError,
    WorkflowFailedError,
)
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.metrics import SagaMetrics
from orchestrator.retry import RetryPolicy
from orchestrator.task_token import TaskToken
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.http_helpers import READ_TOKEN, api_client, running_api

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "legacy"
_handed_out: queue.Queue[tuple[str, int, str]] = queue.Queue()  # (workflow id, attempt, token)
_released: queue.Queue[str] = queue.Queue()  # orders whose reservation was compensated
_seen: dict[tuple[str, int], str] = {}


@dataclass(frozen=True)
class Ask:
    order: str
    start_to_close_s: float = 30.0
    heartbeat_s: float | None = None
    max_attempts: int = 3


@activity.defn(name="legacy.ask")
async def ask_mainframe(order: str) -> str:
    info = activity.info()
    _handed_out.put((info.workflow_id, info.attempt, info.task_token))
    raise activity.CompleteAsync


@workflow.defn(name="legacy.order")
async def order(ctx: workflow.WorkflowContext, ask: Ask) -> str:
    result: str = await ctx.execute_activity(
        ask_mainframe,
        ask.order,
        start_to_close=timedelta(seconds=ask.start_to_close_s),
        heartbeat_timeout=timedelta(seconds=ask.heartbeat_s) if ask.heartbeat_s else None,
        retry=RetryPolicy(initial=timedelta(milliseconds=100), max_attempts=ask.max_attempts),
    )
    return result


@activity.defn(name="legacy.reserve")
async def reserve(order: str) -> str:
    return f"seat for {order}"


@activity.defn(name="legacy.release")
async def release(order: str) -> None:
    _released.put(order)


@workflow.defn(name="legacy.booking")
async def booking(ctx: workflow.WorkflowContext, ask: Ask) -> str:
    """Reserve (compensated by a release), then wait for the mainframe's answer."""
    saga = ctx.saga()
    await saga.step(reserve, ask.order, compensate=release, compensate_args=(ask.order,))
    paid: str = await saga.step(
        ask_mainframe, ask.order, start_to_close=timedelta(seconds=ask.start_to_close_s),
        retry=RetryPolicy(initial=timedelta(milliseconds=100), max_attempts=ask.max_attempts),
    )
    return paid


def token_for(workflow_id: str, attempt: int, timeout_s: float = 30.0) -> str:
    """The token the activity handed out for ``attempt`` of ``workflow_id``'s call."""
    deadline = time.monotonic() + timeout_s
    while (workflow_id, attempt) not in _seen:
        wf, n, token = _handed_out.get(timeout=max(0.01, deadline - time.monotonic()))
        _seen[(wf, n)] = token
    return _seen[(workflow_id, attempt)]


@dataclass(frozen=True)
class Deployment:
    kafka_config: dict[str, Any]
    layout: TopicLayout
    client: Client
    activities: ActivityWorker
    metrics: SagaMetrics


@pytest.fixture(scope="module")
def deployment(kafka: providers.KafkaHandle) -> Iterator[Deployment]:
    config = {"bootstrap.servers": kafka.bootstrap_servers}
    prefix = f"t{uuid.uuid4().hex[:10]}"
    layout = TopicLayout(prefix=prefix, shards=SHARDS)
    ensure_topics(AdminClient(config), layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{prefix}-engine", transaction_timeout_ms=5000)
    metrics = SagaMetrics()
    with (
        EngineWorker(config, layout, [order, booking], options=options),
        ActivityWorker(
            config, QUEUE, [ask_mainframe, reserve, release], layout=layout,
            metrics=metrics.activities,
        ) as worker,
        Client(config, layout=layout) as client,
    ):
        yield Deployment(config, layout, client, worker, metrics)


def start(d: Deployment, ask: Ask, saga: Any = order) -> str:
    workflow_id = f"order-{ask.order}-{uuid.uuid4().hex[:6]}"
    d.client.start(saga, ask, id=workflow_id, task_queue=QUEUE)
    return workflow_id


def history(d: Deployment, workflow_id: str) -> list[ev.Event]:
    return d.client.fetch_history(workflow_id, timeout=20).events


def test_the_client_completes_a_pending_activity(deployment: Deployment) -> None:
    d = deployment
    workflow_id = start(d, Ask("c1"))
    token = token_for(workflow_id, 1)
    assert TaskToken.decode(token).workflow_id == workflow_id
    d.client.complete_activity(token, "paid")
    assert d.client.get_handle(workflow_id).result(timeout=30) == "paid"
    assert d.activities.stats.pending >= 1
    pending = d.metrics.registry.get_sample_value(
        "saga_activity_attempts_total", {"activity_type": "legacy.ask", "outcome": "pending"}
    )
    assert pending is not None and pending >= 1
    [done] = [e for e in history(d, workflow_id) if isinstance(e, ev.ActivityCompleted)]
    assert done.attempt == 1


async def test_the_asyncio_client_fails_then_completes_the_retry(
    deployment: Deployment,
) -> None:
    d = deployment
    workflow_id = await asyncio.to_thread(start, d, Ask("a1"))
    async with await AsyncClient.connect(d.kafka_config, layout=d.layout) as client:
        first = await asyncio.to_thread(token_for, workflow_id, 1)
        await client.fail_activity(first, "mainframe busy", error_type="Busy",
                                   details=["ticket 42"])
        second = await asyncio.to_thread(token_for, workflow_id, 2)  # the policy retried
        await client.heartbeat_activity(second, "still queued")
        await client.complete_activity(second, "paid on retry")
        assert await client.get_handle(workflow_id).result(timeout=30) == "paid on retry"
    events = await asyncio.to_thread(history, d, workflow_id)
    [failed] = [e for e in events if isinstance(e, ev.ActivityAttemptFailed)]
    assert (failed.failure.type, failed.failure.message) == ("Busy", "mainframe busy")
    assert failed.attempt == 1


def test_a_second_completion_is_refused_and_applies_once(deployment: Deployment) -> None:
    d = deployment
    workflow_id = start(d, Ask("d1"))
    token = token_for(workflow_id, 1)
    d.client.complete_activity(token, "first")
    with pytest.raises((ActivityNotRunningError, WorkflowClosedError)):
        d.client.complete_activity(token, "second")
    assert d.client.get_handle(workflow_id).result(timeout=30) == "first"
    completed = [e for e in history(d, workflow_id) if isinstance(e, ev.ActivityCompleted)]
    assert len(completed) == 1


def test_a_failure_by_token_runs_the_sagas_compensation(deployment: Deployment) -> None:
    d = deployment
    workflow_id = start(d, Ask("c1", max_attempts=2), saga=booking)
    d.client.fail_activity(token_for(workflow_id, 1), "line busy", error_type="Busy")
    d.client.fail_activity(token_for(workflow_id, 2), "card declined", error_type="Declined")
    with pytest.raises(WorkflowFailedError, match="card declined"):
        d.client.get_handle(workflow_id).result(timeout=30)
    assert _released.get(timeout=10) == "c1", "the reservation was compensated"
    events = history(d, workflow_id)
    retried = [e for e in events if isinstance(e, ev.ActivityAttemptFailed)]
    assert [(e.attempt, e.failure.type) for e in retried] == [(1, "Busy")]
    types = [e.activity_type for e in events if isinstance(e, ev.ActivityScheduled)]
    assert types == ["legacy.reserve", "legacy.ask", "legacy.release"]


def test_a_non_retryable_failure_by_token_fails_the_saga(deployment: Deployment) -> None:
    d = deployment
    workflow_id = start(d, Ask("f1"))
    d.client.fail_activity(
        token_for(workflow_id, 1), "order unknown", error_type="Unknown", non_retryable=True
    )
    with pytest.raises(WorkflowFailedError, match="order unknown"):
        d.client.get_handle(workflow_id).result(timeout=30)
    [failed] = [e for e in history(d, workflow_id) if isinstance(e, ev.ActivityFailed)]
    assert (failed.attempt, failed.failure.type) == (1, "Unknown"), "not retried"


def test_a_stale_token_is_ignored_and_the_new_attempt_counts(deployment: Deployment) -> None:
    d = deployment
    workflow_id = start(d, Ask("s1", start_to_close_s=1.0))
    stale = token_for(workflow_id, 1)
    fresh = token_for(workflow_id, 2)  # attempt 1 timed out after 1 s and was retried
    with pytest.raises(ActivityNotRunningError, match=r"attempt 1 .* already ended") as late:
        d.client.complete_activity(stale, "from the timed-out attempt")
    assert "start_to_close" in str(late.value), "says how the attempt ended"
    d.client.complete_activity(stale, "unanswered", wait=None)  # no request id: no answer
    d.client.complete_activity(fresh, "from the running attempt")
    assert d.client.get_handle(workflow_id).result(timeout=30) == "from the running attempt"
    events = history(d, workflow_id)
    [timed_out] = [e for e in events if isinstance(e, ev.ActivityAttemptFailed)]
    assert (timed_out.attempt, timed_out.failure.type) == (1, "ActivityTimeoutError")
    assert [e.attempt for e in events if isinstance(e, ev.ActivityCompleted)] == [2]


def test_an_attempt_nobody_completes_times_out(deployment: Deployment) -> None:
    d = deployment
    workflow_id = start(d, Ask("t1", start_to_close_s=1.0, max_attempts=1))
    token_for(workflow_id, 1)
    began = time.monotonic()
    with pytest.raises(WorkflowFailedError, match="start_to_close"):
        d.client.get_handle(workflow_id).result(timeout=30)
    assert time.monotonic() - began < 15
    [timed_out] = [e for e in history(d, workflow_id) if isinstance(e, ev.ActivityTimedOut)]
    assert timed_out.timeout_type == "start_to_close"
    before = len(history(d, workflow_id))
    with pytest.raises(WorkflowClosedError, match="FAILED"):
        d.client.complete_activity(token_for(workflow_id, 1), "too late")
    assert len(history(d, workflow_id)) == before, "the late completion changed nothing"


def test_heartbeats_by_token_keep_a_pending_attempt_alive(deployment: Deployment) -> None:
    d = deployment
    workflow_id = start(d, Ask("h1", heartbeat_s=1.0, max_attempts=1))
    token = token_for(workflow_id, 1)
    for i in range(8):  # 2.4 s: more than twice the heartbeat timeout
        d.client.heartbeat_activity(token, f"step {i}")
        time.sleep(0.3)
    d.client.complete_activity(token, "alive")
    assert d.client.get_handle(workflow_id).result(timeout=30) == "alive"


async def test_the_http_api_completes_a_pending_activity(deployment: Deployment) -> None:
    d = deployment
    workflow_id = await asyncio.to_thread(start, d, Ask("w1"))
    token = await asyncio.to_thread(token_for, workflow_id, 1)
    async with running_api(d.kafka_config, d.layout.prefix) as base_url:
        async with api_client(base_url, READ_TOKEN) as reader:
            refused = await reader.post("/v1/activities/complete", json={"token": token})
            assert refused.status_code == 403, "completing is a command: admin tokens only"
        async with api_client(base_url) as http:
            bad = await http.post("/v1/activities/complete", json={"token": "v1.***"})
            assert bad.status_code == 400
            assert "corrupt" in bad.json()["message"]
            beat = await http.post(
                "/v1/activities/heartbeat", json={"token": token, "details": ["queued"]}
            )
            assert beat.status_code == 200, beat.text
            sent = await http.post(
                "/v1/activities/complete", json={"token": token, "result": "paid by webhook"}
            )
            assert sent.status_code == 200, sent.text
            assert sent.json()["workflow_id"] == workflow_id
            assert sent.json()["attempt"] == 1
            again = await http.post(
                "/v1/activities/complete", json={"token": token, "result": "twice"}
            )
            assert again.status_code == 409, again.text
            assert again.json()["error"] in ("activity_not_running", "workflow_closed")
    handle = d.client.get_handle(workflow_id)
    assert await asyncio.to_thread(handle.result, 30) == "paid by webhook"


def test_saga_activity_complete_from_the_shell(deployment: Deployment) -> None:
    d = deployment
    workflow_id = start(d, Ask("x1"))
    token = token_for(workflow_id, 1)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "KAFKA_BOOTSTRAP_SERVERS": d.kafka_config["bootstrap.servers"],
        "SAGA_TOPIC_PREFIX": d.layout.prefix,
        "SAGA_SHARDS": str(SHARDS),
    }
    saga = [sys.executable, "-c", "from orchestrator.cli import main; main()", "activity"]
    bad = subprocess.run(
        [*saga, "complete", "not-a-token"], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "not a task token" in bad.stderr
    done = subprocess.run(
        [*saga, "complete", token, "--result", '"paid by batch file"'],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert workflow_id in done.stdout
    assert d.client.get_handle(workflow_id).result(timeout=30) == "paid by batch file"
    late = subprocess.run(
        [*saga, "complete", token, "--result", '"again"', "--wait", "20"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert late.returncode == 1, late.stdout
    assert "COMPLETED" in late.stderr and f"saga history {workflow_id}" in late.stderr
