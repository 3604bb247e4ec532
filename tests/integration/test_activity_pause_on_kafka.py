"""Pausing an activity type on a task queue, on Kafka.

While ``actpause.a`` is paused on the queue its tasks wait at the activity worker:
no attempt starts, nothing fails, no retry is spent, even past the attempt's
start-to-close timeout (2 s here); ``actpause.b`` on the same queue keeps running.
On unpause the held attempts run, once each, and the runs complete. A restarted
activity worker reads the pause before it starts any task. Describe (the clients, the
HTTP route) lists a run's unfinished activity with ``paused`` while the pause holds it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.cli import main
from orchestrator.client import AsyncClient, Client
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.metrics import SagaMetrics
from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from orchestrator.worker.task_handoff import TaskHandoff
from tests.integration.http_helpers import ADMIN_TOKEN, READ_TOKEN, bearer, running_api

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "pausable"
RESTART_QUEUE = "pausable-restart"
BOUNDED_QUEUE = "pausable-bounded"
DESCRIBE_QUEUE = "pausable-describe"
FAST = ActivityWorkerOptions(group_watch_interval_s=None, session_timeout_ms=6000,
                             drain_timeout_s=5.0)

_calls: Counter[str] = Counter()
_lock = threading.Lock()


def _count(key: str) -> None:
    with _lock:
        _calls[key] += 1


def calls(key: str) -> int:
    with _lock:
        return _calls[key]


@activity.defn(name="actpause.a")
def a(tag: str) -> str:
    _count(f"a/{tag}")
    return f"a:{tag}"


@activity.defn(name="actpause.b")
def b(tag: str) -> str:
    _count(f"b/{tag}")
    return f"b:{tag}"


@dataclass(frozen=True)
class Req:
    tag: str
    queue: str = QUEUE


@workflow.defn(name="actpause.flow")
async def flow(ctx: workflow.WorkflowContext, req: Req) -> str:
    options: dict[str, Any] = {"task_queue": req.queue, "start_to_close": timedelta(seconds=2)}
    first = await ctx.execute_activity(b, req.tag, **options)
    second = await ctx.execute_activity(a, req.tag, **options)
    return f"{first} {second}"


@dataclass(frozen=True)
class Deployment:
    kafka_config: dict[str, Any]
    layout: TopicLayout
    client: Client
    worker: ActivityWorker
    metrics: SagaMetrics


@pytest.fixture(scope="module")
def deployment(kafka: providers.KafkaHandle) -> Iterator[Deployment]:
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
    prefix = f"t{uuid.uuid4().hex[:10]}"
    layout = TopicLayout(prefix=prefix, shards=SHARDS)
    ensure_topics(AdminClient(config), layout, [QUEUE, RESTART_QUEUE, BOUNDED_QUEUE])
    options = ProcessorOptions(worker_id=f"{prefix}-engine", transaction_timeout_ms=5000)
    metrics = SagaMetrics()
    with (
        EngineWorker(config, layout, [flow], options=options),
        ActivityWorker(config, QUEUE, [a, b], layout=layout, options=FAST,
                       metrics=metrics.activities) as worker,
        Client(config, layout=layout) as client,
    ):
        yield Deployment(config, layout, client, worker, metrics)


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _attempt_events(d: Deployment, workflow_id: str) -> list[ev.Event]:
    events = d.client.fetch_history(workflow_id, timeout=15).events
    return [e for e in events
            if isinstance(e, ev.ActivityAttemptFailed | ev.ActivityFailed | ev.ActivityTimedOut)]


def _cli(d: Deployment, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", d.kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", d.layout.prefix)
    monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_paused_type_waits_while_others_run_then_runs_once_on_unpause(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = deployment
    out = _cli(d, monkeypatch, "activity", "pause", "actpause.a", "--task-queue", QUEUE,
               "--reason", "downstream outage", "--operator", "ops")
    assert "paused" in out and "downstream outage" in out
    listed = _cli(d, monkeypatch, "activity", "paused", "--task-queue", QUEUE)
    assert "actpause.a" in listed and "ops" in listed and "actpause.b" not in listed
    described = _cli(d, monkeypatch, "queue", "describe", QUEUE)
    assert "no flow control" in described and "paused     actpause.a since" in described
    _wait(lambda: d.worker._pauses is not None
          and d.worker._pauses.table.is_paused(QUEUE, "actpause.a"), 10, "the worker saw it")

    tags = [uuid.uuid4().hex[:8] for _ in range(3)]
    handles = [d.client.start(flow, Req(t), id=f"pause-{t}", task_queue=QUEUE) for t in tags]
    _wait(lambda: all(calls(f"b/{t}") == 1 for t in tags), 15, "B ran for every run")
    _wait(lambda: d.worker.held().get("actpause.a") == len(tags), 10, "A's tasks held")
    time.sleep(3.0)  # past A's 2 s start-to-close: still no attempt, nothing failed
    assert all(calls(f"a/{t}") == 0 for t in tags)
    assert all(_attempt_events(d, f"pause-{t}") == [] for t in tags)
    described = json.loads(_cli(d, monkeypatch, "describe", f"pause-{tags[0]}"))
    [waiting] = described["waiting_on_paused_activity_types"]
    assert (waiting["activity_type"], waiting["reason"]) == ("actpause.a", "downstream outage")
    reg, labels = d.metrics.registry, {"task_queue": QUEUE, "activity_type": "actpause.a"}
    _wait(lambda: reg.get_sample_value("saga_activity_held", labels) == len(tags), 5,
          "the held gauge (sampled every 2 s)")
    assert reg.get_sample_value("saga_activity_type_paused", labels) == 1

    _cli(d, monkeypatch, "activity", "unpause", "actpause.a", "--task-queue", QUEUE)
    results = [h.result(timeout=15) for h in handles]
    assert results == [f"b:{t} a:{t}" for t in tags]
    assert all(calls(f"a/{t}") == 1 and calls(f"b/{t}") == 1 for t in tags)
    assert all(_attempt_events(d, f"pause-{t}") == [] for t in tags)  # no retry was spent
    assert d.worker.held() == {}
    assert "no activity type is paused" in _cli(d, monkeypatch, "activity", "paused",
                                                "--task-queue", QUEUE)


def test_a_pause_survives_an_activity_worker_restart(deployment: Deployment) -> None:
    d = deployment
    d.client.pause_activity_type(RESTART_QUEUE, "actpause.a", reason="restart test")
    tag = uuid.uuid4().hex[:8]
    handle = d.client.start(flow, Req(tag, RESTART_QUEUE), id=f"restart-{tag}",
                            task_queue=QUEUE)
    with ActivityWorker(d.kafka_config, RESTART_QUEUE, [a, b], layout=d.layout,
                        options=FAST) as first:
        _wait(lambda: first.held().get("actpause.a") == 1, 15, "A held by the first worker")
    assert calls(f"b/{tag}") == 1 and calls(f"a/{tag}") == 0

    with ActivityWorker(d.kafka_config, RESTART_QUEUE, [a, b], layout=d.layout,
                        options=FAST) as second:
        _wait(lambda: second.held().get("actpause.a") == 1, 15, "A held after the restart")
        assert second.stats.started == 0  # the pause was known before the first task
        d.client.unpause_activity_type(RESTART_QUEUE, "actpause.a")
        assert handle.result(timeout=15) == f"b:{tag} a:{tag}"
    assert calls(f"a/{tag}") == 1 and calls(f"b/{tag}") == 1
    assert _attempt_events(d, f"restart-{tag}") == []


def test_the_async_client_pauses_lists_and_unpauses(deployment: Deployment) -> None:
    d = deployment
    queue = f"pausable-async-{uuid.uuid4().hex[:6]}"

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        client = await AsyncClient.connect(d.kafka_config, layout=d.layout)
        try:
            record = await client.pause_activity_type(queue, "actpause.b", reason="r",
                                                      operator="async-ops")
            assert record.paused and record.operator == "async-ops"
            during = [p.activity_type for p in await client.paused_activity_types(queue)]
            seen_sync = [p.activity_type for p in d.client.paused_activity_types(queue)]
            await client.unpause_activity_type(queue, "actpause.b")
            after = [p.activity_type for p in await client.paused_activity_types(queue)]
        finally:
            await client.close()
        return during, seen_sync, after

    during, seen_sync, after = asyncio.run(scenario())
    assert during == ["actpause.b"] and seen_sync == ["actpause.b"] and after == []


def test_the_http_routes_pause_list_and_unpause(deployment: Deployment) -> None:
    d = deployment
    queue = f"pausable-http-{uuid.uuid4().hex[:6]}"
    body = {"task_queue": queue, "activity_type": "actpause.a", "reason": "bank down"}

    async def scenario() -> tuple[Any, Any, Any, Any]:
        async with (
            running_api(d.kafka_config, d.layout.prefix) as url,
            httpx.AsyncClient(base_url=url, timeout=20, headers=bearer(ADMIN_TOKEN)) as http,
        ):
            paused = (await http.post("/v1/activities/pause", json=body)).json()
            listed = (await http.get(f"/v1/activities/paused?task_queue={queue}",
                                     headers=bearer(READ_TOKEN))).json()
            await http.post("/v1/activities/unpause", json=body)
            after = (await http.get(f"/v1/activities/paused?task_queue={queue}")).json()
            return paused, listed, after, d.client.paused_activity_types(queue)

    paused, listed, after, from_client = asyncio.run(scenario())
    assert paused["paused"] is True and paused["operator"].startswith("http ")
    assert [p["activity_type"] for p in listed["paused"]] == ["actpause.a"]
    assert listed["paused"][0]["reason"] == "bank down"
    assert after == {"paused": []} and from_client == []


def test_a_full_held_buffer_stops_fetching_until_the_unpause(deployment: Deployment) -> None:
    d = deployment
    queue = BOUNDED_QUEUE
    d.client.pause_activity_type(queue, "actpause.a", reason="bounded")
    first, second = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    options = ActivityWorkerOptions(group_watch_interval_s=None, session_timeout_ms=6000,
                                    drain_timeout_s=5.0, max_held=1)
    with ActivityWorker(d.kafka_config, queue, [a, b], layout=d.layout,
                        options=options) as worker:
        one = d.client.start(flow, Req(first, queue), id=f"bounded-{first}", task_queue=queue)
        _wait(lambda: worker.held().get("actpause.a") == 1, 15, "the first run's A held")
        two = d.client.start(flow, Req(second, queue), id=f"bounded-{second}", task_queue=queue)
        # long enough to see a fetch, well inside B's 2 s start-to-close, which runs from
        # its dispatch (B is not paused: only the full buffer keeps it in the queue)
        time.sleep(1.0)
        assert calls(f"b/{second}") == 0  # max_held reached: the queue is not fetched
        d.client.unpause_activity_type(queue, "actpause.a")
        assert one.result(timeout=15) == f"b:{first} a:{first}"
        assert two.result(timeout=15) == f"b:{second} a:{second}"
    assert [calls(f"{k}/{t}") for t in (first, second) for k in "ab"] == [1, 1, 1, 1]


def test_describe_marks_the_pending_activity_a_pause_holds(deployment: Deployment) -> None:
    d = deployment
    queue = DESCRIBE_QUEUE
    ensure_topics(AdminClient(d.kafka_config), d.layout, [queue])
    d.client.pause_activity_type(queue, "actpause.a", reason="describe test")
    tag = uuid.uuid4().hex[:8]
    wf_id = f"described-{tag}"
    held = [{"activity_seq": 2, "activity_type": "actpause.a", "task_queue": queue,
             "attempt": 1, "paused": True}]

    def pending() -> list[dict[str, Any]]:
        found = d.client.get_handle(wf_id).describe(timeout=15).pending_activities
        return [{"activity_seq": p.activity_seq, "activity_type": p.activity_type,
                 "task_queue": p.task_queue, "attempt": p.attempt, "paused": p.paused}
                for p in found]

    async def over_http_and_async() -> tuple[Any, Any]:
        client = await AsyncClient.connect(d.kafka_config, layout=d.layout)
        try:
            described = await client.get_handle(wf_id).describe(timeout=15)
        finally:
            await client.close()
        async with (
            running_api(d.kafka_config, d.layout.prefix) as url,
            httpx.AsyncClient(base_url=url, timeout=20, headers=bearer(READ_TOKEN)) as http,
        ):
            body = (await http.get(f"/v1/workflows/{wf_id}")).json()
        return described.pending_activities, body["workflow"]["pending_activities"]

    with ActivityWorker(d.kafka_config, queue, [a, b], layout=d.layout,
                        options=FAST) as worker:
        handle = d.client.start(flow, Req(tag, queue), id=wf_id, task_queue=queue)
        _wait(lambda: worker.held().get("actpause.a") == 1, 15, "A held by the worker")
        _wait(lambda: pending() == held, 15, "describe marking A as held")
        from_async, from_http = asyncio.run(over_http_and_async())
        assert [(p.activity_type, p.paused) for p in from_async] == [("actpause.a", True)]
        assert from_http == held
        d.client.unpause_activity_type(queue, "actpause.a")
        assert handle.result(timeout=15) == f"b:{tag} a:{tag}"
    assert pending() == []  # closed: nothing pending


def test_a_task_handed_over_in_process_is_held_like_a_fetched_one(
    kafka: providers.KafkaHandle,
) -> None:
    """An engine and an activity worker in one process (task handoff,
    orchestrator/worker/task_handoff.py): the engine hands a task of the paused type to
    the awake worker, which sends it to the queue to be held in order with the others;
    it starts on unpause, once, with no retry spent."""
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
    prefix = f"t{uuid.uuid4().hex[:10]}"
    layout = TopicLayout(prefix=prefix, shards=SHARDS)
    queue = "pausable-handed"
    ensure_topics(AdminClient(config), layout, [queue])
    options = ProcessorOptions(worker_id=f"{prefix}-engine", transaction_timeout_ms=5000)
    handoff = TaskHandoff()
    with (
        EngineWorker(config, layout, [flow], options=options, handoff=handoff),
        ActivityWorker(config, queue, [a, b], layout=layout, options=FAST,
                       handoff=handoff) as worker,
        Client(config, layout=layout) as client,
    ):
        client.pause_activity_type(queue, "actpause.a", reason="handed")
        _wait(lambda: worker._pauses is not None
              and worker._pauses.table.is_paused(queue, "actpause.a"), 10, "the worker saw it")
        tag = uuid.uuid4().hex[:8]
        # B goes through the queue (the worker fetched nothing lately) and wakes the
        # worker; A, decided as B's outcome comes back, is handed to it
        handle = client.start(flow, Req(tag, queue), id=f"handed-{tag}", task_queue=queue)
        _wait(lambda: worker.held().get("actpause.a") == 1, 15, "A held")
        assert worker.stats.handed >= 1, "A went through the queue, not handed over"
        time.sleep(3.0)  # past A's 2 s start-to-close: still no attempt, nothing failed
        assert calls(f"b/{tag}") == 1 and calls(f"a/{tag}") == 0
        events = client.fetch_history(f"handed-{tag}", timeout=15).events
        assert not [e for e in events if isinstance(e, ev.ActivityAttemptFailed)]

        client.unpause_activity_type(queue, "actpause.a")
        assert handle.result(timeout=15) == f"b:{tag} a:{tag}"
        assert calls(f"a/{tag}") == 1
        events = client.fetch_history(f"handed-{tag}", timeout=15).events
        assert not [e for e in events if isinstance(e, ev.ActivityAttemptFailed)]
        assert worker.held() == {}
