"""Clients on real Kafka: commands are keyed, placed, framed and decodable; waiting calls
pick their reply by correlation id (replies produced here, standing in for the shard)."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from orchestrator import workflow
from orchestrator.client import (
    AsyncClient,
    Client,
    IdReusePolicy,
    ReplyTimeoutError,
    result_correlation_id,
)
from orchestrator.client._async import aiokafka_options
from orchestrator.config import Settings
from orchestrator.converter import DataConverter
from orchestrator.engine.events import Failure
from orchestrator.exceptions import (
    ApplicationError,
    QueryError,
    UpdateRejectedError,
    WorkflowFailedError,
)
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import (
    CancelWorkflow,
    QueryWorkflow,
    Reply,
    ReplyKind,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    UpdateWorkflow,
    WireFormat,
)

pytestmark = pytest.mark.integration

SHARDS = 4
CONV = DataConverter()
WIRE = WireFormat()
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


@workflow.defn(name="transfer")
async def transfer(ctx: Any, amount: int) -> int:
    return amount


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    return layout


@pytest.fixture
def client(kafka_config: dict[str, Any], layout: TopicLayout) -> Iterator[Client]:
    with Client(kafka_config, layout=layout) as c:
        yield c


def read_commands(config: dict[str, Any], layout: TopicLayout, n: int) -> list[Any]:
    """The first ``n`` records of the commands topic (all partitions), raw."""
    consumer = Consumer({**config, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(layout.commands, p, 0) for p in range(SHARDS)])
    got: list[Any] = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        got += [m for m in consumer.consume(100, 0.1) if m.error() is None]
    consumer.close()
    assert len(got) == n
    return got


def check_framing(msg: Any, ce_type: str) -> tuple[Any, dict[str, bytes]]:
    """Key, partition and CloudEvents headers of one command; its decoded record."""
    headers = dict(msg.headers())
    decoded = WIRE.decode_command(msg.headers(), msg.value())
    command = decoded.record
    assert msg.key() == command.workflow_id.encode()
    assert msg.partition() == shard_for(command.workflow_id, SHARDS)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == ce_type.encode()
    assert headers["ce_source"] == b"/saga/client"
    assert headers["content-type"] == b"application/avro"
    assert TRACEPARENT.match(headers["traceparent"].decode())
    return command, headers


def test_sync_client_commands_are_keyed_partitioned_framed_and_decodable(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    given_trace = f"00-{'ab' * 16}-{'cd' * 8}-01"
    handle = client.start(
        transfer,
        125,
        id="order-42",
        task_queue="payments",
        id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE,
        search_attributes={"customer": "c-1"},
        memo={"note": "first"},
        traceparent=given_trace,
        priority=5,
        fairness_key="tenantA",
    )
    handle.signal("approve", "alice", 2)
    other = client.get_handle("order-7")
    other.cancel("changed my mind")
    other.terminate("operator")

    msgs = read_commands(kafka_config, layout, 4)
    by_type = {dict(m.headers())["ce_type"].decode(): m for m in msgs}
    start, headers = check_framing(by_type["saga.command.start.v2"], "saga.command.start.v2")
    assert isinstance(start, StartWorkflow)
    assert (start.workflow_type, start.task_queue) == ("transfer", "payments")
    assert CONV.from_payloads(start.input, [int]) == [125]
    assert start.id_reuse_policy is IdReusePolicy.REJECT_DUPLICATE
    assert CONV.from_payload(start.search_attributes["customer"]) == "c-1"
    assert CONV.from_payload(start.memo["note"]) == "first"
    assert (start.priority, start.fairness_key) == (5, "tenantA")
    assert headers["traceparent"] == given_trace.encode()
    assert headers["ce_id"].decode() == start.request_id == handle.start_request_id

    signal, headers = check_framing(by_type["saga.command.signal.v1"], "saga.command.signal.v1")
    assert isinstance(signal, SignalWorkflow)
    assert (signal.workflow_id, signal.signal_name) == ("order-42", "approve")
    assert CONV.from_payloads(signal.args, [str, int]) == ["alice", 2]
    assert headers["ce_id"].decode() == signal.request_id
    assert headers["traceparent"] != given_trace.encode()  # a fresh one per call

    cancel, _ = check_framing(by_type["saga.command.cancel.v1"], "saga.command.cancel.v1")
    assert isinstance(cancel, CancelWorkflow)
    assert (cancel.workflow_id, cancel.reason) == ("order-7", "changed my mind")
    term, _ = check_framing(by_type["saga.command.terminate.v1"], "saga.command.terminate.v1")
    assert isinstance(term, TerminateWorkflow)
    assert term.reason == "operator"
    assert msgs[0].partition() != msgs[-1].partition() or shard_for(
        "order-42", SHARDS
    ) == shard_for("order-7", SHARDS)


async def test_async_client_commands_match_the_sync_ones(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    async with await AsyncClient.connect(kafka_config, layout=layout) as client:
        handle = await client.start("transfer", args=[1, 2], id="a-1", task_queue="q",
                                    priority=3, fairness_key="k")
        await handle.signal("go", request_id="go-1")
        await handle.cancel()
        await handle.terminate("stop")
    msgs = read_commands(kafka_config, layout, 4)
    types = []
    for m in msgs:
        ce_type = dict(m.headers())["ce_type"].decode()
        command, headers = check_framing(m, ce_type)
        assert headers["ce_id"].decode() == command.request_id
        types.append(ce_type)
        if isinstance(command, StartWorkflow):
            assert CONV.from_payloads(command.input, [int, int]) == [1, 2]
            assert (command.priority, command.fairness_key) == (3, "k")
        if isinstance(command, SignalWorkflow):
            assert command.request_id == "go-1"  # the caller's, as given
    assert types == [
        "saga.command.start.v2",
        "saga.command.signal.v1",
        "saga.command.cancel.v1",
        "saga.command.terminate.v1",
    ]


def test_a_raw_producer_with_only_the_schema_file_writes_a_valid_start(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    with (SCHEMAS / "saga.command.start.v1.avsc").open() as f:
        schema = fastavro.parse_schema(json.load(f))
    value = io.BytesIO()
    fastavro.schemaless_writer(
        value,
        schema,
        {
            "workflow_id": "raw-1",
            "workflow_type": "transfer",
            "task_queue": "payments",
            "input": [{"metadata": {"encoding": b"json/plain"}, "data": b"125"}],
        },
    )
    producer = Producer({**kafka_config, "partitioner": "murmur2_random"})
    producer.produce(
        layout.commands,
        key=b"raw-1",
        value=value.getvalue(),
        headers=[
            ("ce_specversion", b"1.0"),
            ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_type", b"saga.command.start.v1"),
            ("ce_source", b"/billing/cron"),
            ("content-type", b"application/avro"),
        ],
    )
    assert producer.flush(10) == 0
    (msg,) = read_commands(kafka_config, layout, 1)
    assert msg.partition() == shard_for("raw-1", SHARDS)  # murmur2 agrees with Java's
    start = WIRE.decode_command(msg.headers(), msg.value()).record
    assert isinstance(start, StartWorkflow)
    assert (start.workflow_id, start.workflow_type) == ("raw-1", "transfer")
    assert CONV.from_payloads(start.input, [int]) == [125]


# --- waiting calls, answered by a stand-in for the shard --------------------------


class Responder:
    """Answers update and query commands on the replies topic, like a shard would."""

    def __init__(self, config: dict[str, Any], layout: TopicLayout) -> None:
        self.config, self.layout = config, layout
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        consumer = Consumer({**self.config, "group.id": "responder", "enable.auto.commit": False})
        consumer.assign([TopicPartition(self.layout.commands, p, 0) for p in range(SHARDS)])
        producer = Producer(self.config)
        while not self.stop.is_set():
            for msg in consumer.consume(100, 0.05):
                command = WIRE.decode_command(msg.headers(), msg.value()).record
                if isinstance(command, UpdateWorkflow):
                    args = CONV.from_payloads(command.args, [])
                    ok = command.update_name != "reject"
                    reply = Reply(
                        correlation_id=command.update_id,
                        kind=ReplyKind.UPDATE,
                        workflow_id=command.workflow_id,
                        ok=ok,
                        result=CONV.to_payload({"name": command.update_name, "args": args})
                        if ok
                        else None,
                        error=None if ok else Failure(message="not now", type="Busy"),
                    )
                elif isinstance(command, QueryWorkflow):
                    ok = command.query_name != "boom"
                    reply = Reply(
                        correlation_id=command.query_id,
                        kind=ReplyKind.QUERY,
                        workflow_id=command.workflow_id,
                        ok=ok,
                        result=CONV.to_payload(command.query_name.upper()) if ok else None,
                        error=None if ok else Failure(message="kaput", type="KeyError"),
                    )
                else:
                    continue
                rec = WIRE.encode_reply(reply)
                producer.produce(self.layout.replies, rec.value, rec.key, headers=rec.headers)
            producer.flush(5)
        consumer.close()

    def __enter__(self) -> Responder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def produce_reply(config: dict[str, Any], layout: TopicLayout, reply: Reply) -> None:
    producer = Producer(config)
    rec = WIRE.encode_reply(reply)
    producer.produce(layout.replies, rec.value, rec.key, headers=rec.headers)
    assert producer.flush(10) == 0


def test_update_and_query_wait_for_their_reply(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    handle = client.get_handle("wf-u")
    with Responder(kafka_config, layout):
        assert handle.update("set_limit", 10, "eur") == {"name": "set_limit", "args": [10, "eur"]}
        assert handle.query("status") == "STATUS"
        with pytest.raises(QueryError, match="KeyError: kaput"):
            handle.query("boom")
        with pytest.raises(UpdateRejectedError, match="Busy: not now") as info:
            handle.update("reject")
        assert isinstance(info.value.__cause__, ApplicationError)
        # concurrent waiters each get their own reply
        results: list[Any] = [None] * 8
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, handle.update("n", i)))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert [r["args"] for r in results] == [[i] for i in range(8)]


def test_waiting_calls_time_out_with_a_clear_error(client: Client, layout: TopicLayout) -> None:
    handle = client.get_handle("nobody-home")
    started = time.monotonic()
    with pytest.raises(ReplyTimeoutError, match="is an engine worker running") as info:
        handle.query("status", timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 5
    assert layout.prefix in str(info.value)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(ReplyTimeoutError):
        handle.result(timeout=1.0)


def test_result_from_the_result_reply(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    # a run that closes while the caller waits: the RESULT reply
    waiting = client.get_handle("wf-live")
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(waiting.result(timeout=20)))
    t.start()
    time.sleep(0.5)
    produce_reply(
        kafka_config,
        layout,
        Reply(
            correlation_id=result_correlation_id("wf-live"),
            kind=ReplyKind.RESULT,
            workflow_id="wf-live",
            ok=True,
            result=CONV.to_payload({"receipt": 9}),
        ),
    )
    t.join(20)
    assert got == [{"receipt": 9}]

    # a failed run: WorkflowFailedError with the cause (the handle is made first: a
    # RESULT kept from before a handle was made is checked with the owner, and there
    # is no engine here)
    bad = client.get_handle("wf-bad")
    produce_reply(
        kafka_config,
        layout,
        Reply(
            correlation_id=result_correlation_id("wf-bad"),
            kind=ReplyKind.RESULT,
            workflow_id="wf-bad",
            ok=False,
            error=Failure(message="declined", type="CardDeclined"),
        ),
    )
    with pytest.raises(WorkflowFailedError, match="CardDeclined") as info:
        bad.result(timeout=10)
    assert info.value.status == "FAILED"
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.type == "CardDeclined"
    # a run that closed before the client started is found by the shard that owns it:
    # tests/integration/test_client_outcomes.py (it needs a real engine worker)


async def test_async_waiting_calls(kafka_config: dict[str, Any], layout: TopicLayout) -> None:
    async with await AsyncClient.connect(kafka_config, layout=layout) as client:
        handle = client.get_handle("wf-a")
        with Responder(kafka_config, layout):
            assert await handle.update("set", 1) == {"name": "set", "args": [1]}
            assert await handle.query("q") == "Q"
        with pytest.raises(ReplyTimeoutError):
            await handle.query("q", timeout=0.5)


def test_settings_pass_security_through_without_logging_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        bootstrap_servers="b:9093",
        kafka_extra={
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "svc",
            "sasl.password": "hunter2",
            "socket.keepalive.enable": "true",
        },
    )
    with caplog.at_level("DEBUG"):
        options = aiokafka_options(settings.kafka_config())
    assert options["sasl_plain_password"] == "hunter2"
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "socket.keepalive.enable" in caplog.text
    assert "hunter2" not in caplog.text
