"""Workflow code runs on the Kafka engine: activities, durable sleep across a restart."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.engine_shard import result_correlation_id
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 2
SLEEP_S = 3


@workflow.defn(name="e2e.order")
async def order(ctx: workflow.WorkflowContext, item: str) -> str:
    receipt = await ctx.execute_activity(
        "reserve", item, task_queue="work", result_type=str, start_to_close=timedelta(minutes=5)
    )
    await ctx.sleep(timedelta(seconds=SLEEP_S))
    return f"{receipt}/shipped"


def wait_for(
    config: dict[str, Any], topic: str, partitions: int, match: Any, timeout_s: float = 40
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in read_topic(config, topic, partitions):
            found = match(msg)
            if found is not None:
                return found
        time.sleep(0.3)
    raise TimeoutError(f"nothing matched on {topic}")


def test_saga_with_activity_and_sleep_survives_worker_restart(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, ["work"])
    wire, conv = WireFormat(), DataConverter()
    options = ProcessorOptions(worker_id=f"{topic_prefix}-w", transaction_timeout_ms=5000)
    wf_id = "order-1001"
    producer = Producer(kafka_config)

    def send(command: rec.Command) -> None:
        encoded = wire.encode_command(command)
        producer.produce(
            layout.commands,
            key=encoded.key,
            value=encoded.value,
            headers=list(encoded.headers),
            partition=shard_for(wf_id, SHARDS),
        )
        producer.flush(10)

    first = EngineWorker(kafka_config, layout, [order], options=options).start()
    send(
        rec.StartWorkflow(
            workflow_id=wf_id,
            workflow_type="e2e.order",
            task_queue="work",
            input=[conv.to_payload("book")],
        )
    )
    # act as the activity worker: take the task, answer with a result
    task = wait_for(
        kafka_config,
        layout.task_queue("work"),
        SHARDS,
        lambda m: wire.decode_task(m.headers(), m.value()).record,
    )
    assert task.activity_type == "reserve"
    assert task.idempotency_key == f"{wf_id}/{task.run_id}/{task.activity_seq}"
    assert conv.from_payloads(task.args, [str]) == ["book"]
    send(
        rec.ActivityTaskCompleted(
            workflow_id=wf_id,
            run_id=task.run_id,
            activity_seq=task.activity_seq,
            attempt=task.attempt,
            result=conv.to_payload("R-1"),
        )
    )
    # the workflow is now sleeping; the worker goes away and a new one takes over
    time.sleep(1.0)
    slept_from = time.monotonic()
    first.stop()
    assert first.error is None
    with EngineWorker(kafka_config, layout, [order], options=options) as second:

        def result_reply(msg: Any) -> rec.Reply | None:
            reply = wire.decode_reply(msg.headers(), msg.value()).record
            return reply if reply.correlation_id == result_correlation_id(wf_id) else None

        reply = wait_for(kafka_config, layout.replies, SHARDS, result_reply)
        woke_after = time.monotonic() - slept_from
        assert second.error is None
    assert reply.ok
    assert conv.from_payload(reply.result, str) == "R-1/shipped"
    assert woke_after >= SLEEP_S - 1.2  # the sleep was honoured across the restart

    history = [
        wire.decode_history(m.headers(), m.value()).record
        for m in read_topic(kafka_config, layout.history, SHARDS)
    ]
    events = [h.event for h in history if not isinstance(h, rec.WorkflowSnapshot)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
    snapshots = [h for h in history if isinstance(h, rec.WorkflowSnapshot)]
    assert snapshots[-1].status is rec.WorkflowStatus.COMPLETED


def flip_workflow(first_activity: str) -> object:
    """Two builds of the same workflow type that disagree on their first step."""

    @workflow.defn(name="e2e.flip")
    async def flip(ctx: workflow.WorkflowContext, item: str) -> str:
        return await ctx.execute_activity(
            first_activity,
            item,
            task_queue="work",
            result_type=str,
            start_to_close=timedelta(minutes=5),
        )

    return flip


def test_non_determinism_parks_visibly_and_fixed_code_resumes(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, ["work"])
    wire, conv = WireFormat(), DataConverter()
    options = ProcessorOptions(worker_id=f"{topic_prefix}-w", transaction_timeout_ms=5000)
    good, bad = flip_workflow("reserve"), flip_workflow("charge")
    wf_id = "flip-1"
    producer = Producer(kafka_config)

    def send(command: rec.Command) -> None:
        encoded = wire.encode_command(command)
        producer.produce(
            layout.commands,
            key=encoded.key,
            value=encoded.value,
            headers=list(encoded.headers),
            partition=shard_for(wf_id, SHARDS),
        )
        producer.flush(10)

    def latest_snapshot() -> rec.WorkflowSnapshot | None:
        found = None
        for m in read_topic(kafka_config, layout.history, SHARDS):
            record = wire.decode_history(m.headers(), m.value()).record
            if isinstance(record, rec.WorkflowSnapshot) and record.workflow_id == wf_id:
                found = record
        return found

    with EngineWorker(kafka_config, layout, [good], options=options):
        send(
            rec.StartWorkflow(
                workflow_id=wf_id,
                workflow_type="e2e.flip",
                task_queue="work",
                input=[conv.to_payload("x")],
            )
        )
        task = wait_for(
            kafka_config,
            layout.task_queue("work"),
            SHARDS,
            lambda m: wire.decode_task(m.headers(), m.value()).record,
        )
    # a bad build replays the run, disagrees with its history, and parks it
    with EngineWorker(kafka_config, layout, [bad], options=options) as worker:
        deadline = time.monotonic() + 30
        while (snap := latest_snapshot()) is None or snap.parked is None:
            assert time.monotonic() < deadline, "the run was not parked"
            time.sleep(0.3)
        parked_shards = sum(s.stats.parked for s in worker.shards.values())
    assert parked_shards == 1
    assert snap.status is rec.WorkflowStatus.RUNNING
    assert "reserve" in snap.parked and "charge" in snap.parked  # expected vs actual, named
    # the fixed build replays it cleanly: unparked, and it finishes
    with EngineWorker(kafka_config, layout, [good], options=options):
        send(
            rec.ActivityTaskCompleted(
                workflow_id=wf_id,
                run_id=task.run_id,
                activity_seq=task.activity_seq,
                attempt=task.attempt,
                result=conv.to_payload("reserved"),
            )
        )

        def done(_m: Any) -> rec.WorkflowSnapshot | None:
            snap = latest_snapshot()
            return (
                snap if snap is not None and snap.status is rec.WorkflowStatus.COMPLETED else None
            )

        final = wait_for(kafka_config, layout.replies, SHARDS, done)
    assert final.parked is None
    assert conv.from_payload(final.result, str) == "reserved"
