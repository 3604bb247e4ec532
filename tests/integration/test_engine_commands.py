"""Engine behaviour seen from the topics: idempotent start, garbage to the DLQ, retention."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
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
from orchestrator.worker.shard.dlq import REASON_HEADER
from orchestrator.worker.shard.engine_shard import result_correlation_id
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 4
WIRE = WireFormat()
CONV = DataConverter()


@workflow.defn(name="e2e.nap")
async def nap(ctx: workflow.WorkflowContext, label: str) -> str:
    await ctx.sleep(timedelta(milliseconds=200))
    return f"rested:{label}"


class Commands:
    """Sends commands like any Kafka client would, and reads replies."""

    def __init__(self, config: dict[str, Any], layout: TopicLayout) -> None:
        self.config, self.layout = config, layout
        self.producer = Producer(config)

    def send(self, command: rec.Command, ce_id: str | None = None) -> None:
        encoded = WIRE.encode_command(command, ce_id=ce_id)
        self.producer.produce(
            self.layout.commands,
            key=encoded.key,
            value=encoded.value,
            headers=list(encoded.headers),
            partition=shard_for(command.workflow_id, SHARDS),
        )

    def start(
        self,
        wf_id: str,
        label: str,
        request_id: str | None = None,
        policy: rec.IdReusePolicy = rec.IdReusePolicy.ALLOW_DUPLICATE,
    ) -> None:
        self.send(
            rec.StartWorkflow(
                workflow_id=wf_id,
                workflow_type="e2e.nap",
                task_queue="q",
                input=[CONV.to_payload(label)],
                request_id=request_id,
                id_reuse_policy=policy,
            )
        )

    def replies(
        self, want: Callable[[dict[str, rec.Reply]], bool], timeout_s: float = 60
    ) -> dict[str, rec.Reply]:
        self.producer.flush(10)
        deadline = time.monotonic() + timeout_s
        while True:
            seen = {}
            for msg in read_topic(self.config, self.layout.replies, SHARDS):
                reply = WIRE.decode_reply(msg.headers(), msg.value()).record
                seen[reply.correlation_id] = reply
            if want(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(0.3)


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, ["q"])
    return layout


def options(prefix: str) -> ProcessorOptions:
    return ProcessorOptions(worker_id=f"{prefix}-w", transaction_timeout_ms=5000)


def test_start_is_idempotent_by_workflow_id(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    client = Commands(kafka_config, layout)
    with EngineWorker(kafka_config, layout, [nap], options=options(layout.prefix)):
        client.start("invoice-7", "a", request_id="first")
        client.start("invoice-7", "b", request_id="second")  # same business id, still running
        replies = client.replies(
            lambda r: result_correlation_id("invoice-7") in r and {"first", "second"} <= set(r)
        )
    first, second = replies["first"], replies["second"]
    assert first.ok and second.ok
    assert first.run_id == second.run_id  # one execution, not two
    result = replies[result_correlation_id("invoice-7")]
    assert CONV.from_payload(result.result, str) == "rested:a"


def test_garbage_goes_to_the_dlq_while_sagas_finish(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    client = Commands(kafka_config, layout)
    rng = random.Random(11)
    garbage = 0
    with EngineWorker(kafka_config, layout, [nap], options=options(layout.prefix)) as worker:
        for i in range(20):
            client.start(f"nap-{i}", str(i))
        for i in range(1000):
            key = f"junk-{i}".encode()
            kind = i % 4
            if kind == 0:  # random bytes, no headers at all
                value, headers = os.urandom(rng.randrange(0, 200)), []
            elif kind == 1:  # a real start command, truncated
                enc = WIRE.encode_command(
                    rec.StartWorkflow(
                        workflow_id=key.decode(), workflow_type="e2e.nap", task_queue="q"
                    )
                )
                value, headers = enc.value[: rng.randrange(0, len(enc.value))], list(enc.headers)
            elif kind == 2:  # a type nobody knows
                value, headers = (
                    b"\x00",
                    [
                        ("ce_specversion", b"1.0"),
                        ("ce_id", b"x"),
                        ("ce_type", b"saga.command.explode.v9"),
                        ("ce_source", b"/fuzz"),
                    ],
                )
            else:  # well formed, but an unknown workflow type
                enc = WIRE.encode_command(
                    rec.StartWorkflow(
                        workflow_id=key.decode(), workflow_type="no.such.saga", task_queue="q"
                    )
                )
                value, headers = enc.value, list(enc.headers)
            client.producer.produce(
                layout.commands,
                key=key,
                value=value,
                headers=headers,
                partition=shard_for(key.decode(), SHARDS),
            )
            garbage += 1
        replies = client.replies(
            lambda r: all(result_correlation_id(f"nap-{i}") in r for i in range(20))
        )
        dlq = read_topic(kafka_config, layout.dlq, 1)
        deadline = time.monotonic() + 30
        while len(dlq) < garbage and time.monotonic() < deadline:
            time.sleep(0.5)
            dlq = read_topic(kafka_config, layout.dlq, 1)
        assert worker.error is None
    for i in range(20):
        assert (
            CONV.from_payload(replies[result_correlation_id(f"nap-{i}")].result, str)
            == f"rested:{i}"
        )
    assert len(dlq) == garbage
    reasons = [dict(m.headers())[REASON_HEADER].decode() for m in dlq]
    assert all(reasons), "every DLQ record says why"
    assert sum("unknown workflow type 'no.such.saga'" in r for r in reasons) == 250


def test_closed_runs_are_tombstoned_after_retention(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    client = Commands(kafka_config, layout)
    opts = options(layout.prefix)
    with EngineWorker(kafka_config, layout, [nap], options=opts, retention_ms=1500):
        client.start("receipt-1", "x", request_id="r1", policy=rec.IdReusePolicy.REJECT_DUPLICATE)
        client.replies(lambda r: result_correlation_id("receipt-1") in r)
        time.sleep(3)  # retention passes; the shard writes tombstones
        latest: dict[bytes, bytes | None] = {}
        for msg in read_topic(kafka_config, layout.history, SHARDS):
            latest[msg.key()] = msg.value()
        mine = {k: v for k, v in latest.items() if k.startswith(b"receipt-1/")}
        assert mine, "the run wrote history"
        assert all(v is None for v in mine.values()), "every event and the snapshot tombstoned"
        # the id is free again, even under REJECT_DUPLICATE: the closed run is forgotten
        client.start("receipt-1", "y", request_id="r2", policy=rec.IdReusePolicy.REJECT_DUPLICATE)
        replies = client.replies(lambda r: "r2" in r)
    assert replies["r2"].ok
    assert replies["r2"].run_id != replies["r1"].run_id


def test_raw_producer_with_librdkafka_default_partitioner_starts_a_saga(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    """Only fastavro, the published schema file and a plain producer: no project code."""
    import io
    import json
    import uuid
    import zlib

    import fastavro

    from orchestrator.devstack.paths import REPO_ROOT

    wf_id = next(
        f"raw-{i}"
        for i in range(100)
        if zlib.crc32(f"raw-{i}".encode()) % SHARDS != shard_for(f"raw-{i}", SHARDS)
    )
    schema_path = REPO_ROOT / "schemas" / "saga.command.start.v1.avsc"
    schema = fastavro.parse_schema(json.loads(schema_path.read_text()))
    value = io.BytesIO()
    fastavro.schemaless_writer(
        value,
        schema,
        {
            "workflow_id": wf_id,
            "workflow_type": "e2e.nap",
            "task_queue": "q",
            "input": [
                {"metadata": {"encoding": b"json/plain"}, "data": json.dumps("raw").encode()}
            ],
        },
    )
    raw = Producer({**kafka_config, "partitioner": "consistent_random"})  # librdkafka's default
    raw.produce(
        layout.commands,
        key=wf_id.encode(),
        value=value.getvalue(),
        headers=[
            ("ce_specversion", b"1.0"),
            ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_type", b"saga.command.start.v1"),
            ("ce_source", b"/raw-test"),
            ("content-type", b"application/avro"),
        ],
    )
    raw.flush(10)
    client = Commands(kafka_config, layout)
    with EngineWorker(kafka_config, layout, [nap], options=options(layout.prefix)) as worker:
        replies = client.replies(lambda r: result_correlation_id(wf_id) in r)
        forwarded = worker.processor.metrics.forwarded
    assert forwarded >= 1, "the record arrived on the wrong partition and was forwarded"
    assert CONV.from_payload(replies[result_correlation_id(wf_id)].result, str) == "rested:raw"


@workflow.defn(name="e2e.late")
async def late(ctx: workflow.WorkflowContext, label: str) -> str:
    return f"late:{label}"


def test_dead_letters_can_be_redriven_after_a_deploy(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    from orchestrator.log.dlq_tools import read_dead_letters, redrive

    client = Commands(kafka_config, layout)
    client.send(
        rec.StartWorkflow(
            workflow_id="late-1",
            workflow_type="e2e.late",
            task_queue="q",
            input=[CONV.to_payload("a")],
        )
    )
    client.producer.flush(10)
    with EngineWorker(kafka_config, layout, [nap], options=options(layout.prefix)):  # old build
        deadline = time.monotonic() + 30
        letters: list[Any] = []
        while not letters and time.monotonic() < deadline:
            time.sleep(0.3)
            letters = list(read_dead_letters(kafka_config, layout.dlq))
    assert [letter.reason for letter in letters] == [
        # every engine worker also hosts the built-in schedule, batch and operation
        # handler workflows (docs/schedules.md, docs/batch.md, docs/operations-api.md)
        "unknown workflow type 'e2e.late'; this worker knows "
        "['e2e.nap', 'saga.batch', 'saga.operation.handler', 'saga.schedule']"
    ]
    assert letters[0].source_topic == layout.commands
    with EngineWorker(kafka_config, layout, [nap, late], options=options(layout.prefix)):
        assert redrive(kafka_config, layout.dlq, reason_pattern="unknown workflow type") == 1
        replies = client.replies(lambda r: result_correlation_id("late-1") in r)
    assert CONV.from_payload(replies[result_correlation_id("late-1")].result, str) == "late:a"
