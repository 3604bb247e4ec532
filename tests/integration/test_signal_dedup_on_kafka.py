"""Signals sent twice, on a real broker: the same record produced twice by a raw
producer, and a client's retry with the same request id, are each applied once, also
when the repeat comes after the engine worker restarted.

What a user checks: the workflow's result (what its handler saw), the history topic
(how many SignalReceived) and the replies topic (each send was acknowledged)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from tests.integration.test_start_policy_on_kafka import CONV, SHARDS, WIRE, Wire, engine

pytestmark = pytest.mark.integration


@workflow.defn(name="dedup.inbox")
async def inbox(ctx: workflow.WorkflowContext, n: int) -> list[str]:
    got: list[str] = []
    ctx.set_signal_handler("note", got.append)
    await ctx.wait_condition(lambda: "end" in got)
    return got


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, ["q"])
    return layout


def send_signal(
    wire: Wire, value: str, *, ce_id: str, request_id: str | None = None
) -> None:
    command = rec.SignalWorkflow(
        workflow_id="inbox-1", signal_name="note", args=[CONV.to_payload(value)],
        request_id=request_id,
    )
    encoded = WIRE.encode_command(command, ce_id=ce_id)
    wire.producer.produce(
        wire.layout.commands,
        key=encoded.key,
        value=encoded.value,
        headers=list(encoded.headers),
        partition=shard_for("inbox-1", SHARDS),
    )
    wire.producer.flush(10)


def signal_replies(replies: list[rec.Reply], correlation: str) -> list[rec.Reply]:
    return [
        r for r in replies if r.kind is rec.ReplyKind.SIGNAL and r.correlation_id == correlation
    ]


def test_a_signal_resent_from_a_raw_producer_is_applied_once(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    wire = Wire(kafka_config, layout)
    with engine(kafka_config, layout, [inbox]):
        wire.start("inbox-1", "dedup.inbox", 0, ce_id="ce-start")
        send_signal(wire, "a", ce_id="ce-a")
        send_signal(wire, "a", ce_id="ce-a")  # the same record again
        send_signal(wire, "b", ce_id="ce-b1", request_id="req-b")
        send_signal(wire, "b", ce_id="ce-b2", request_id="req-b")  # a client's retry
        wire.wait_replies(
            lambda rs: len(signal_replies(rs, "ce-a")) == 2
            and len(signal_replies(rs, "req-b")) == 2
        )
    with engine(kafka_config, layout, [inbox]):  # a restarted worker: replayed runs
        send_signal(wire, "a", ce_id="ce-a")
        send_signal(wire, "b", ce_id="ce-b3", request_id="req-b")
        send_signal(wire, "end", ce_id="ce-end")
        replies = wire.wait_replies(
            lambda rs: any(r.kind is rec.ReplyKind.RESULT for r in rs)
            and len(signal_replies(rs, "ce-a")) == 3
            and len(signal_replies(rs, "req-b")) == 3
        )
    for correlation in ("ce-a", "req-b"):
        answers = signal_replies(replies, correlation)
        assert len(answers) == 3 and all(r.ok for r in answers), answers
    [result] = [r for r in replies if r.kind is rec.ReplyKind.RESULT]
    assert result.ok and CONV.from_payload(result.result) == ["a", "b", "end"]
    received = [e for e in wire.events("inbox-1") if isinstance(e, ev.SignalReceived)]
    assert [e.request_id for e in received] == ["ce-a", "req-b", "ce-end"]
