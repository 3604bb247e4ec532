"""Bad input, fuzzed with hypothesis, against a running EngineWorker on a real broker.

Every bad record must end as a DLQ record with a reason or as an error reply, the
worker must never stop (``worker.error is None``) and sagas started alongside
must still finish. Hypothesis only *generates* the records (bounded example
counts, no shrinking against the broker); they are then produced in bulk and the
outcome of each is checked by its key or correlation id. Counts are printed
(``pytest -s``).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orchestrator import workflow
from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.errors import DecodeFailure
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.dlq import REASON_HEADER
from orchestrator.worker.shard.engine_shard import result_correlation_id
from orchestrator.worker.shard.processor import ProcessorOptions
from orchestrator.worker.shard.records import headers_of
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 4
WIRE = WireFormat()
CONV = DataConverter()
#: the worker's own limit in these tests, far below the broker's ~1 MB, so records
#: over it can reach the topic and the orchestrator's check is what refuses them
WORKER_LIMIT = 64 * 1024
GENERATE = settings(
    max_examples=60,
    database=None,
    deadline=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)

Headers = list[tuple[str, bytes]]
OutHeaders = list[tuple[str, str | bytes | None]]


@workflow.defn(name="bad.nap")
async def nap(ctx: workflow.WorkflowContext, label: str) -> str:
    await ctx.sleep(timedelta(milliseconds=200))
    return f"rested:{len(label)}:{label[:20]}"


@workflow.defn(name="bad.sleep")
async def sleeper(ctx: workflow.WorkflowContext, seconds: float) -> str:
    await ctx.sleep(seconds)
    return "woke"


@workflow.defn(name="bad.inbox")
class Inbox:
    """Waits for ``go``; has no handler for any other signal name."""

    def __init__(self) -> None:
        self.total = 0
        self.calls = 0

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext) -> int:
        await ctx.wait_condition(lambda: self.calls > 0)
        return self.total

    @workflow.signal(name="go")
    def go(self, amount: int) -> None:
        self.calls += 1
        self.total += amount


WORKFLOWS: list[Any] = [nap, sleeper, Inbox]


class Harness:
    """Produces raw records like any Kafka client would, reads replies and the DLQ."""

    def __init__(self, config: dict[str, Any], layout: TopicLayout) -> None:
        self.config, self.layout = config, layout
        self.producer = Producer({**config, "linger.ms": 5})

    def raw(self, key: str, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> None:
        out_headers: OutHeaders = list(headers)
        while True:
            try:
                self.producer.produce(
                    self.layout.commands,
                    key=key.encode(),
                    value=value,
                    headers=out_headers,
                    partition=shard_for(key, SHARDS),
                )
            except BufferError:
                self.producer.poll(0.1)
            else:
                return

    def send(self, command: rec.Command) -> None:
        encoded = WIRE.encode_command(command)
        self.raw(command.workflow_id, encoded.value, list(encoded.headers))

    def start(self, wf_id: str, wf_type: str, *args: Any) -> None:
        self.send(
            rec.StartWorkflow(
                workflow_id=wf_id,
                workflow_type=wf_type,
                task_queue="q",
                input=[CONV.to_payload(a) for a in args],
                request_id=f"start/{wf_id}",
            )
        )

    def replies(
        self, want: Callable[[dict[str, rec.Reply]], bool], timeout_s: float = 60
    ) -> dict[str, rec.Reply]:
        self.producer.flush(30)
        deadline = time.monotonic() + timeout_s
        while True:
            seen = {}
            for msg in read_topic(self.config, self.layout.replies, SHARDS):
                reply = WIRE.decode_reply(headers_of(msg), msg.value()).record
                seen[reply.correlation_id] = reply
            if want(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(0.3)

    def dead_letters(self, at_least: int, timeout_s: float = 60) -> dict[str, str]:
        """Key -> reason of every DLQ record (waits until ``at_least`` are there)."""
        self.producer.flush(30)
        deadline = time.monotonic() + timeout_s
        while True:
            found = {
                (m.key() or b"").decode(errors="replace"): (
                    dict(headers_of(m)).get(REASON_HEADER) or b""
                ).decode()
                for m in read_topic(self.config, self.layout.dlq, 1)
            }
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def history(self, wf_id: str) -> list[ev.Event]:
        events = []
        for m in read_topic(self.config, self.layout.history, SHARDS):
            key, value = m.key() or b"", m.value()
            if value is None or not key.startswith(f"{wf_id}/".encode()):
                continue
            if key.endswith(b"/snapshot"):
                continue
            events.append(WIRE.decode_event(headers_of(m), value).record.event)
        return sorted(events, key=lambda e: e.seq)


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, ["q"])
    return layout


def engine(config: dict[str, Any], layout: TopicLayout) -> EngineWorker:
    return EngineWorker(
        config,
        layout,
        WORKFLOWS,
        options=ProcessorOptions(worker_id=f"{layout.prefix}-w", transaction_timeout_ms=5000),
        wire=WireFormat(max_record_bytes=WORKER_LIMIT),
    )


# --- strategies ----------------------------------------------------------------------

_text = st.text(min_size=1, max_size=40)
_payloads = st.lists(
    st.builds(
        lambda enc, data: Payload({"encoding": enc}, data),
        st.sampled_from([b"json/plain", b"binary/plain", b"nonsense/x"]),
        st.binary(max_size=64),
    ),
    max_size=3,
)


def _commands(wf_id: str) -> st.SearchStrategy[rec.Command]:
    """Well-formed commands of every client kind, with random contents."""
    return st.one_of(
        st.builds(
            rec.SignalWorkflow, workflow_id=st.just(wf_id), signal_name=_text, args=_payloads
        ),
        st.builds(rec.CancelWorkflow, workflow_id=st.just(wf_id), reason=_text),
        st.builds(rec.TerminateWorkflow, workflow_id=st.just(wf_id), reason=_text),
        st.builds(
            rec.UpdateWorkflow,
            workflow_id=st.just(wf_id),
            update_id=st.uuids().map(str),
            update_name=_text,
            args=_payloads,
        ),
        st.builds(
            rec.QueryWorkflow,
            workflow_id=st.just(wf_id),
            query_id=st.uuids().map(str),
            query_name=_text,
            args=_payloads,
        ),
        st.builds(
            rec.StartWorkflow,
            workflow_id=st.just(wf_id),
            workflow_type=_text,
            task_queue=_text,
            input=_payloads,
        ),
    )


def _ce_headers(ce_type: str) -> Headers:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", uuid.uuid4().hex.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_source", b"/fuzz"),
        ("content-type", b"application/avro"),
    ]


def generate_garbage() -> list[tuple[str, str, bytes | None, Headers]]:
    """(category, key, value, headers) of records that must all be dead-lettered."""
    out: list[tuple[str, str, bytes | None, Headers]] = []

    def key(category: str) -> str:
        return f"fz-{category}-{len(out)}"

    @GENERATE
    @given(
        st.binary(max_size=300),
        st.lists(st.tuples(st.sampled_from(["ce_type", "ce_id", "x"]), st.binary(max_size=30))),
    )
    def random_bytes(value: bytes, headers: Headers) -> None:
        out.append(("random-bytes", key("rb"), value, headers))

    @GENERATE
    @given(st.data(), st.integers(min_value=2, max_value=10**9))
    def wrong_version(data: st.DataObject, version: int) -> None:
        k = key("ver")
        command = data.draw(_commands(k))
        encoded = WIRE.encode_command(command)
        ce_type = dict(encoded.headers)["ce_type"].decode()
        family = ce_type.rsplit(".v", 1)[0]
        known = {v.version for v in WIRE.registry.versions(family)}
        if version in known:  # a version this reader has (saga.command.start.v2): none
            version = max(known) + 1
        out.append(("wrong-version", k, encoded.value, _ce_headers(f"{family}.v{version}")))

    @GENERATE
    @given(st.data())
    def truncated(data: st.DataObject) -> None:
        k = key("trunc")
        encoded = WIRE.encode_command(data.draw(_commands(k)))
        cut = data.draw(st.integers(min_value=0, max_value=len(encoded.value) - 1))
        out.append(("truncated", k, encoded.value[:cut], list(encoded.headers)))

    @GENERATE
    @given(st.integers(min_value=WORKER_LIMIT + 1, max_value=4 * WORKER_LIMIT))
    def oversized(size: int) -> None:
        k = key("big")
        start = rec.StartWorkflow(workflow_id=k, workflow_type="bad.nap", task_queue="q")
        encoded = WIRE.encode_command(start)
        # a real start command with junk appended up to ``size``: only the size is wrong
        value = encoded.value + os.urandom(size - len(encoded.value))
        out.append(("oversized", k, value, list(encoded.headers)))

    @GENERATE
    @given(_text.filter(lambda t: t not in {"bad.nap", "bad.sleep", "bad.inbox"}), _payloads)
    def unknown_type(wf_type: str, payloads: list[Payload]) -> None:
        k = key("type")
        start = rec.StartWorkflow(
            workflow_id=k, workflow_type=wf_type, task_queue="q", input=payloads
        )
        encoded = WIRE.encode_command(start)
        out.append(("unknown-workflow-type", k, encoded.value, list(encoded.headers)))

    for fn in (random_bytes, wrong_version, truncated, oversized, unknown_type):
        fn()
    return out


# --- tests ---------------------------------------------------------------------------


def test_fuzzed_garbage_is_dead_lettered_while_sagas_finish(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    garbage = generate_garbage()
    h = Harness(kafka_config, layout)
    near_limit = "n" * (WORKER_LIMIT - 400)  # a start command just under the worker's limit
    assert len(WIRE.encode_command(_start("near", near_limit)).value) <= WORKER_LIMIT
    with engine(kafka_config, layout) as worker:
        for i in range(10):
            h.start(f"ok-{i}", "bad.nap", str(i))
        for _, key, value, headers in garbage:
            h.raw(key, value, headers)
        h.start("near", "bad.nap", near_limit)
        for i in range(10, 20):
            h.start(f"ok-{i}", "bad.nap", str(i))
        wanted = [result_correlation_id(f"ok-{i}") for i in range(20)]
        wanted.append(result_correlation_id("near"))
        replies = h.replies(lambda r: all(w in r for w in wanted))
        dlq = h.dead_letters(len(garbage))
        assert worker.error is None
        assert worker.processor.metrics.aborted == 0
    for i in range(20):
        result = replies[result_correlation_id(f"ok-{i}")].result
        assert _value(result, str) == f"rested:{len(str(i))}:{i}"
    near = replies[result_correlation_id("near")]
    assert near.ok and _value(near.result, str).startswith(f"rested:{len(near_limit)}")
    outcome: Counter[str] = Counter()
    for category, key, _, _ in garbage:
        assert key in dlq, f"{category} record {key} was not dead-lettered"
        reason = dlq[key]
        assert reason, f"{key} has no reason"
        outcome[f"{category} -> {_reason_code(reason)}"] += 1
    by_category = Counter(category for category, *_ in garbage)
    assert all(
        _reason_code(dlq[k]) == DecodeFailure.OVERSIZED.value
        for c, k, *_ in garbage
        if c == "oversized"
    )
    assert all(
        dlq[k].startswith("unknown workflow type")
        for c, k, *_ in garbage
        if c == "unknown-workflow-type"
    )
    assert all(
        _reason_code(dlq[k]) in {"unsupported-version", "unknown-type"}
        for c, k, *_ in garbage
        if c == "wrong-version"
    )
    print(f"\nbad records tried: {len(garbage)} {dict(by_category)}; dead-lettered: {len(dlq)}")
    for line, count in sorted(outcome.items()):
        print(f"  {count:4d}  {line}")


def _start(wf_id: str, label: str) -> rec.StartWorkflow:
    return rec.StartWorkflow(
        workflow_id=wf_id, workflow_type="bad.nap", task_queue="q", input=[CONV.to_payload(label)]
    )


def _value(payload: Payload | None, hint: Any) -> Any:
    assert payload is not None, "the reply carries a result"
    return CONV.from_payload(payload, hint)


def _reason_code(reason: str) -> str:
    if reason.startswith("unknown workflow type"):
        return "unknown workflow type"
    code = reason.split(":", 1)[0].split(" (", 1)[0]
    return code if code in {f.value for f in DecodeFailure} else reason[:40]


def test_commands_for_missing_workflows_get_workflow_not_found(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    sent: list[tuple[str, rec.ReplyKind]] = []  # (correlation id, expected kind)
    commands: list[rec.Command] = []

    @GENERATE
    @given(_text, st.sampled_from(["signal", "cancel", "terminate", "update", "query"]), _text)
    def missing(wf_suffix: str, kind: str, name: str) -> None:
        wf_id = f"ghost-{len(commands)}-{wf_suffix}"
        rid = uuid.uuid4().hex
        command: rec.Command
        if kind == "signal":
            command = rec.SignalWorkflow(workflow_id=wf_id, signal_name=name, request_id=rid)
        elif kind == "cancel":
            command = rec.CancelWorkflow(workflow_id=wf_id, reason=name, request_id=rid)
        elif kind == "terminate":
            command = rec.TerminateWorkflow(workflow_id=wf_id, reason=name, request_id=rid)
        elif kind == "update":
            command = rec.UpdateWorkflow(workflow_id=wf_id, update_id=rid, update_name=name)
        else:
            command = rec.QueryWorkflow(workflow_id=wf_id, query_id=rid, query_name=name)
        commands.append(command)
        sent.append((rid, rec.ReplyKind[kind.upper()]))

    missing()
    h = Harness(kafka_config, layout)
    with engine(kafka_config, layout) as worker:
        h.start("alive", "bad.inbox")
        h.replies(lambda r: "start/alive" in r)
        for command in commands:
            h.send(command)
        # a live workflow id, but a run id that is not its run: also not found
        h.send(
            rec.SignalWorkflow(
                workflow_id="alive", signal_name="go", run_id="no-such-run", request_id="wrong-run"
            )
        )
        sent.append(("wrong-run", rec.ReplyKind.SIGNAL))
        replies = h.replies(lambda r: all(c in r for c, _ in sent))
        assert worker.error is None
    for correlation, kind in sent:
        reply = replies[correlation]
        assert reply.kind is kind
        assert not reply.ok
        assert reply.error is not None and reply.error.type == "WorkflowNotFound"
        assert "no such workflow run" in reply.error.message
    print(f"\ncommands for missing workflows: {len(sent)}; WorkflowNotFound replies: {len(sent)}")


def test_unknown_signal_names_are_recorded_and_buffered(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    """A signal nobody handles is accepted (reply ok), recorded in history as
    SignalReceived and buffered for a later handler or ``wait_signal``; it does not
    disturb the run."""
    names: list[str] = []

    @GENERATE
    @given(_text.filter(lambda t: t != "go"))
    def pick(name: str) -> None:
        names.append(name)

    pick()
    h = Harness(kafka_config, layout)
    with engine(kafka_config, layout) as worker:
        h.start("inbox-1", "bad.inbox")
        h.replies(lambda r: "start/inbox-1" in r)
        for i, name in enumerate(names):
            h.send(
                rec.SignalWorkflow(
                    workflow_id="inbox-1",
                    signal_name=name,
                    args=[CONV.to_payload(i)],
                    request_id=f"sig-{i}",
                )
            )
        h.send(
            rec.SignalWorkflow(
                workflow_id="inbox-1", signal_name="go", args=[CONV.to_payload(5)], request_id="go"
            )
        )
        done = result_correlation_id("inbox-1")
        replies = h.replies(lambda r: done in r and all(f"sig-{i}" in r for i in range(len(names))))
        assert worker.error is None
    assert all(replies[f"sig-{i}"].ok for i in range(len(names)))
    assert _value(replies[done].result, int) == 5
    received = [e.signal_name for e in h.history("inbox-1") if isinstance(e, ev.SignalReceived)]
    assert received == [*names, "go"]
    print(f"\nunknown signal names sent: {len(names)}; accepted and buffered: {len(names)}")


def test_a_signal_whose_arguments_its_handler_cannot_read_is_refused_in_the_reply(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    """The executor refuses it (Decision.rejected, no history event); the sender
    should learn that from its reply."""
    h = Harness(kafka_config, layout)
    with engine(kafka_config, layout) as worker:
        h.start("inbox-2", "bad.inbox")
        h.replies(lambda r: "start/inbox-2" in r)
        h.send(
            rec.SignalWorkflow(
                workflow_id="inbox-2",
                signal_name="go",
                args=[CONV.to_payload("not a number")],
                request_id="bad-go",
            )
        )
        h.send(
            rec.SignalWorkflow(
                workflow_id="inbox-2",
                signal_name="go",
                args=[CONV.to_payload(7)],
                request_id="good-go",
            )
        )
        done = result_correlation_id("inbox-2")
        replies = h.replies(lambda r: done in r and "bad-go" in r)
        assert worker.error is None
    assert _value(replies[done].result, int) == 7, "the bad signal was not applied"
    received = [e for e in h.history("inbox-2") if isinstance(e, ev.SignalReceived)]
    assert len(received) == 1, "only the readable signal is in history"
    assert not replies["bad-go"].ok, "the sender is told its signal was refused"


def test_out_of_range_timers(kafka_config: dict[str, Any], layout: TopicLayout) -> None:
    cases = {
        "negative": -5.0,  # asyncio semantics: no wait at all
        "million-days": timedelta(days=10**6).total_seconds(),  # a real durable timer
        "infinite": math.inf,
        "nan": math.nan,
        "past-int64-ms": 1e300,
    }
    h = Harness(kafka_config, layout)
    with engine(kafka_config, layout) as worker:
        for name, seconds in cases.items():
            h.start(f"timer-{name}", "bad.sleep", seconds)
        closed = [result_correlation_id(f"timer-{n}") for n in ("negative", "infinite", "nan")]
        replies = h.replies(
            lambda r: all(c in r for c in closed) and "start/timer-million-days" in r
        )
        dlq = h.dead_letters(1)
        h.send(
            rec.TerminateWorkflow(
                workflow_id="timer-million-days", reason="test over", request_id="term"
            )
        )
        terminated = h.replies(
            lambda r: "term" in r and result_correlation_id("timer-million-days") in r
        )
        assert worker.error is None
    assert _value(replies[result_correlation_id("timer-negative")].result, str) == "woke"
    for name, error_type in (("infinite", "OverflowError"), ("nan", "ValueError")):
        reply = replies[result_correlation_id(f"timer-{name}")]
        assert not reply.ok and reply.error is not None and reply.error.type == error_type
    long_sleep = [e for e in h.history("timer-million-days") if isinstance(e, ev.TimerStarted)]
    assert len(long_sleep) == 1
    assert long_sleep[0].fire_at - long_sleep[0].time == 10**6 * 86_400_000
    assert terminated["term"].ok
    assert not terminated[result_correlation_id("timer-million-days")].ok
    # a wake time past 64-bit milliseconds cannot be recorded: the start is dead-lettered
    assert "OverflowError" in dlq["timer-past-int64-ms"]
    assert "start/timer-past-int64-ms" not in replies, "no START reply: the caller only times out"
    print(f"\nout-of-range timers: {len(cases)}; failed runs: 2; dead-lettered: 1; ran: 2")


def test_a_command_near_the_broker_limit_is_dead_lettered_without_stalling(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    """A record the broker accepted on the commands topic (just under its ~1 MB
    limit) must not wedge the engine: its DLQ copy carries extra headers and may no
    longer fit, and a transaction that fails is retried from the same offset."""
    h = Harness(kafka_config, layout)
    big = Producer({**kafka_config, "message.max.bytes": 2_000_000})
    big.produce(
        layout.commands,
        key=b"huge-1",
        value=os.urandom(1_040_000),
        headers=list[tuple[str, str | bytes | None]](_ce_headers("saga.command.start.v1")),
        partition=shard_for("huge-1", SHARDS),
    )
    assert big.flush(30) == 0
    with engine(kafka_config, layout) as worker:
        h.start("after-huge", "bad.nap", "x")
        replies = h.replies(lambda r: result_correlation_id("after-huge") in r, timeout_s=25)
        aborted = worker.processor.metrics.aborted
        assert worker.error is None
    assert result_correlation_id("after-huge") in replies, (
        f"the engine stalled: {aborted} transactions aborted on the oversized DLQ copy"
    )
    assert "huge-1" in h.dead_letters(1, timeout_s=5)
