"""Starts sent twice, on a real broker: from a raw producer and through ``saga dlq redrive``.

What a user checks is the history topic (how many runs began, how many closed) and
the replies topic (what each send was told)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator import workflow
from orchestrator.cli import main
from orchestrator.client import AsyncClient, Client
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 2
WIRE = WireFormat()
CONV = DataConverter()


@workflow.defn(name="policy.double")
async def double(ctx: workflow.WorkflowContext, n: int) -> int:
    return n * 2


@workflow.defn(name="policy.rest")
async def rest(ctx: workflow.WorkflowContext, millis: int) -> int:
    await ctx.sleep(timedelta(milliseconds=millis))
    return millis


class Wire:
    """A raw producer of commands, and readers of replies and history."""

    def __init__(self, config: dict[str, Any], layout: TopicLayout) -> None:
        self.config, self.layout = config, layout
        self.producer = Producer(config)

    def start(self, workflow_id: str, workflow_type: str, arg: int, ce_id: str, **kw: Any) -> None:
        start = rec.StartWorkflow(
            workflow_id=workflow_id,
            workflow_type=workflow_type,
            task_queue="q",
            input=[CONV.to_payload(arg)],
            **kw,
        )
        encoded = WIRE.encode_command(start, ce_id=ce_id)
        self.producer.produce(
            self.layout.commands,
            key=encoded.key,
            value=encoded.value,
            headers=list(encoded.headers),
            partition=shard_for(workflow_id, SHARDS),
        )
        self.producer.flush(10)

    def replies(self) -> list[rec.Reply]:
        return [
            WIRE.decode_reply(m.headers(), m.value()).record
            for m in read_topic(self.config, self.layout.replies, SHARDS)
        ]

    def wait_replies(
        self, done: Callable[[list[rec.Reply]], bool], timeout_s: float = 60
    ) -> list[rec.Reply]:
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.replies()
            if done(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(0.3)

    def events(self, workflow_id: str) -> list[ev.Event]:
        out = []
        for msg in read_topic(self.config, self.layout.history, SHARDS):
            key = msg.key() or b""
            if msg.value() is None or key.endswith(b"/snapshot"):
                continue
            record = WIRE.decode_event(msg.headers(), msg.value()).record
            if record.workflow_id == workflow_id:
                out.append(record.event)
        return out

    def runs_and_closes(self, workflow_id: str) -> tuple[int, int]:
        """How many runs began, and how many RESULT replies (closes) there were."""
        started = sum(isinstance(e, ev.WorkflowStarted) for e in self.events(workflow_id))
        results = [
            r
            for r in self.replies()
            if r.kind is rec.ReplyKind.RESULT and r.workflow_id == workflow_id
        ]
        return started, len(results)


def start_replies(replies: list[rec.Reply], correlation: str) -> list[rec.Reply]:
    return [r for r in replies if r.kind is rec.ReplyKind.START and r.correlation_id == correlation]


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, ["q"])
    return layout


def engine(config: dict[str, Any], layout: TopicLayout, workflows: list[Any]) -> EngineWorker:
    options = ProcessorOptions(worker_id=f"{layout.prefix}-w", transaction_timeout_ms=5000)
    return EngineWorker(config, layout, workflows, options=options)


def test_a_start_resent_from_a_raw_producer_runs_once(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    wire = Wire(kafka_config, layout)
    with engine(kafka_config, layout, [double, rest]):
        wire.start("pay-1", "policy.double", 21, ce_id="ce-pay-1")
        wire.start("pay-2", "policy.double", 5, ce_id="ce-pay-2", request_id="req-pay-2")
        wire.start("pay-3", "policy.rest", 1500, ce_id="ce-pay-3", request_id="req-pay-3")
        wire.start("pay-3", "policy.rest", 1500, ce_id="ce-pay-3b", request_id="req-pay-3")
        wire.wait_replies(
            lambda rs: sum(r.kind is rec.ReplyKind.RESULT for r in rs) == 3, timeout_s=30
        )
        # after the runs closed: the same record again, and a client's retry (new ce_id)
        wire.start("pay-1", "policy.double", 21, ce_id="ce-pay-1")
        wire.start("pay-2", "policy.double", 5, ce_id="ce-pay-2b", request_id="req-pay-2")
        replies = wire.wait_replies(
            lambda rs: (
                len(start_replies(rs, "ce-pay-1")) == 2 and len(start_replies(rs, "req-pay-2")) == 2
            )
        )
    for correlation in ("ce-pay-1", "req-pay-2", "req-pay-3"):
        first, repeat = start_replies(replies, correlation)
        assert first.ok and repeat.ok, (first, repeat)
        assert repeat.run_id == first.run_id
    results = {r.workflow_id: CONV.from_payload(r.result) for r in replies if r.result}
    assert results == {"pay-1": 42, "pay-2": 10, "pay-3": 1500}
    for workflow_id in ("pay-1", "pay-2", "pay-3"):
        assert wire.runs_and_closes(workflow_id) == (1, 1), workflow_id


def test_a_start_redriven_twice_from_the_dlq_runs_once(
    kafka_config: dict[str, Any], layout: TopicLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", layout.prefix)
    monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
    wire = Wire(kafka_config, layout)
    with engine(kafka_config, layout, [rest]):  # an old build: the start is dead-lettered
        wire.start("late-1", "policy.double", 4, ce_id="ce-late", request_id="req-late")
        wire.wait_replies(lambda rs: len(start_replies(rs, "req-late")) == 1)

    def redrive() -> None:
        done = CliRunner().invoke(main, ["dlq", "redrive", "--reason", "unknown workflow type"])
        assert done.exit_code == 0 and "redriven: 1" in done.output, done.output

    with engine(kafka_config, layout, [rest, double]):
        redrive()
        wire.wait_replies(lambda rs: len(start_replies(rs, "req-late")) == 2)
        wire.wait_replies(lambda rs: any(r.kind is rec.ReplyKind.RESULT for r in rs))
        redrive()  # an operator runs it again: the run closed, the start is a repeat
        replies = wire.wait_replies(lambda rs: len(start_replies(rs, "req-late")) == 3)
    refused, started, repeat = start_replies(replies, "req-late")
    assert not refused.ok and refused.error is not None
    assert refused.error.type == "UnknownWorkflowType"
    assert started.ok and repeat.ok and repeat.run_id == started.run_id
    assert wire.runs_and_closes("late-1") == (1, 1)
    assert Counter(type(e).__name__ for e in wire.events("late-1"))["WorkflowCompleted"] == 1


def test_terminate_if_running_replaces_the_running_run(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    wire = Wire(kafka_config, layout)
    with engine(kafka_config, layout, [double, rest]):
        wire.start("acct-9", "policy.rest", 600_000, ce_id="ce-old", request_id="old")
        wire.wait_replies(lambda rs: len(start_replies(rs, "old")) == 1)
        wire.start(
            "acct-9",
            "policy.double",
            21,
            ce_id="ce-new",
            request_id="new",
            id_reuse_policy=rec.IdReusePolicy.TERMINATE_IF_RUNNING,
        )
        replies = wire.wait_replies(
            lambda rs: sum(r.kind is rec.ReplyKind.RESULT for r in rs) == 2, timeout_s=30
        )
    (old,), (new,) = start_replies(replies, "old"), start_replies(replies, "new")
    assert new.ok and new.run_id != old.run_id
    ended, finished = [r for r in replies if r.kind is rec.ReplyKind.RESULT]
    assert (ended.run_id, ended.ok) == (old.run_id, False)
    assert ended.error is not None and ended.error.type == "Terminated"
    assert "request new" in ended.error.message
    assert (finished.run_id, CONV.from_payload(finished.result)) == (new.run_id, 42)
    names = [type(e).__name__ for e in wire.events("acct-9")]
    assert names == [
        "WorkflowStarted",
        "TimerStarted",
        "WorkflowTerminated",
        "WorkflowStarted",
        "WorkflowCompleted",
    ]


def test_an_execution_timeout_closes_the_run_timed_out(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    wire = Wire(kafka_config, layout)
    with engine(kafka_config, layout, [rest]):
        wire.start("slow-1", "policy.rest", 600_000, ce_id="ce-slow", execution_timeout_ms=1500)
        replies = wire.wait_replies(
            lambda rs: any(r.kind is rec.ReplyKind.RESULT for r in rs), timeout_s=30
        )
    (result,) = [r for r in replies if r.kind is rec.ReplyKind.RESULT]
    assert not result.ok and result.error is not None and result.error.type == "TimedOut"
    events = wire.events("slow-1")
    assert [type(e).__name__ for e in events] == [
        "WorkflowStarted",
        "TimerStarted",
        "WorkflowCancelRequested",
        "TimerCancelled",
        "WorkflowTimedOut",
    ]
    started, cancel = events[0], events[2]
    assert isinstance(started, ev.WorkflowStarted) and started.execution_deadline is not None
    assert isinstance(cancel, ev.WorkflowCancelRequested) and cancel.timed_out
    assert 1500 <= cancel.time - started.time < 15_000


def _kept_result_of(wire: Wire, workflow_id: str, run_id: str) -> None:
    """Wait until the run's RESULT reply is on the topic, and a moment more for the
    clients' reply listeners to have kept it."""
    wire.wait_replies(lambda rs: any(
        r.kind is rec.ReplyKind.RESULT and r.run_id == run_id for r in rs
    ), timeout_s=30)  # fmt: skip
    time.sleep(1.0)


def test_result_of_an_id_started_again_is_the_new_runs_not_a_kept_one(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    """A client keeps the RESULT replies it sees, asked for or not. When the same id
    runs again (a new start, a reset), ``result()`` must give the new run's outcome,
    not the earlier run's kept reply: a handle from ``start`` and one from
    ``get_handle`` alike, in both clients."""
    wire = Wire(kafka_config, layout)
    with engine(kafka_config, layout, [double, rest]), Client(kafka_config, layout=layout) as c:
        first = c.start(double, 4, id="again", task_queue="q", wait_started=30)
        assert first.run_id is not None
        _kept_result_of(wire, "again", first.run_id)  # 8, kept: nobody asked for it
        second = c.start(rest, 1500, id="again", task_queue="q", wait_started=30)
        assert second.run_id != first.run_id
        assert c.get_handle("again").result(timeout=30) == 1500
        assert second.result(timeout=30) == 1500

        async def in_the_async_client() -> tuple[int, int]:
            async with await AsyncClient.connect(kafka_config, layout=layout) as ac:
                third = await ac.start(double, 21, id="again2", task_queue="q", wait_started=30)
                assert third.run_id is not None
                _kept_result_of(wire, "again2", third.run_id)  # 42, kept
                fourth = await ac.start(rest, 700, id="again2", task_queue="q", wait_started=30)
                return await ac.get_handle("again2").result(timeout=30), await fourth.result(
                    timeout=30
                )

        assert asyncio.run(in_the_async_client()) == (700, 700)
