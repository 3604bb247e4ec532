"""A worker whose static consumers the group fences joins again and goes on serving.

The group fences a static member when another consumer joins under its
``group.instance.id``: a duplicate ``--worker-id``, or librdkafka itself, whose rejoin
after the group coordinator moved (a broker failure) can fence its own member. Here a
second client joins the engine's group and the task queue's group under the worker's
instance ids, as that rejoin does. The worker must replace both consumers, take its
partitions back, finish a saga started afterwards, and still stop promptly on SIGTERM
(orchestrator/worker/fencing.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard.processor import ProcessorOptions, ShardProcessor
from tests.integration.counter_shard_app import CounterShard
from tests.integration.kafka_reading import read_topic
from tests.integration.raw_commands import produce_start
from tests.integration.restart_sagas import QUEUE
from tests.integration.saga_process import saga_env
from tests.integration.test_shard_processor import history_by_key
from tests.integration.test_worker_restart import Worker, logs_of, outcomes, wait_for

pytestmark = pytest.mark.integration
SHARDS = 4
#: a saga started after the fencing finishes within this long (measured 0.01-0.04 s in
#: 3 runs: by then the worker has joined again, which is what fenced the intruder)
SERVE_BOUND_S = 30.0
#: SIGTERM to exit (measured 0.5-0.9 s; an activity worker drains at most 30 s, none
#: run here)
STOP_BOUND_S = 10.0
#: ... and with the engine's commit stuck: the 15 s it is given from its start, then the
#: rest of the stop (measured 15.0-16.0 s)
HELD_STOP_BOUND_S = 30.0
#: a saga whose first commit hangs finishes within this long: the 5 s the worker waits
#: before it fences the commit, then the rebuild of its shards and the saga itself
STUCK_BOUND_S = 45.0
WIRE, CONV = WireFormat(), DataConverter()


def _member(bootstrap: str, group: str, instance: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": instance,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "enable.auto.commit": False,
        }
    )


def _fatal_error(consumer: Consumer, timeout_s: float) -> KafkaError | None:
    """Poll until the consumer serves a fatal error (it was fenced), or None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is not None and msg.error().code() == KafkaError._FATAL:
            return msg.error()  # type: ignore[no-any-return]
    return None


def _timed(call: Any) -> tuple[float, Any]:
    began = time.monotonic()
    try:
        outcome = call()
    except KafkaException as exc:
        outcome = exc
    return time.monotonic() - began, outcome


def test_a_fenced_consumer_fails_fast_and_closes_at_once(
    kafka_config: dict[str, Any], admin: AdminClient, unique: str
) -> None:
    """What librdkafka does with a static consumer fenced by a second one (the worker's
    handling rests on it): the fatal error is served once, every call after it returns
    at once, and ``close`` does not block."""
    topic, group = f"fence{unique}", f"g{unique}"
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    bootstrap = kafka_config["bootstrap.servers"]
    first = _member(bootstrap, group, "same")
    first.subscribe([topic])
    deadline = time.monotonic() + 30
    while not first.assignment():
        assert time.monotonic() < deadline, "the first member was never assigned"
        first.poll(0.1)
    second = _member(bootstrap, group, "same")
    second.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        error = None
        while error is None and time.monotonic() < deadline:
            second.poll(0.05)
            error = _fatal_error(first, 0.05)
        assert error is not None, "the first member was never fenced"
        assert "fenced" in error.str()
        assert first.assignment() == []  # dropped, with no revocation callback
        took, polled = _timed(lambda: first.poll(0.5))
        assert polled is None and took < 2  # nothing more, no hang
        took, committed = _timed(
            lambda: first.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        )
        assert isinstance(committed, KafkaException)
        assert committed.args[0].code() == KafkaError._FATAL
        assert took < 1
        took, _ = _timed(first.close)
        print(f"fenced consumer: commit failed at once, close took {took:.3f}s")  # with -s
        assert took < 2
    finally:
        second.close()


def _patched_worker(
    module: str, kafka_config: dict[str, Any], prefix: str, log_path: Path
) -> subprocess.Popen[bytes]:
    """``saga worker`` (engine and activity worker) run through a test module that
    patches the engine (``tests.integration.<module>``), logging to ``log_path``."""
    args = ["-m", f"tests.integration.{module}", "worker"]
    args += ["--sagas", "tests.integration.restart_sagas", "--task-queue", QUEUE]
    args += ["--worker-id", f"{prefix}-{module}"]
    env = saga_env(kafka_config["bootstrap.servers"], prefix, SHARDS)
    with log_path.open("ab") as out:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=out)


def _start(producer: Producer, layout: TopicLayout, wf_id: str) -> None:
    produce_start(producer, layout, wf_id, "restart.one_step", QUEUE, [wf_id])
    producer.flush(10)


@pytest.mark.timeout(180)
def test_a_fenced_worker_joins_again_serves_and_stops_promptly(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    bootstrap = kafka_config["bootstrap.servers"]
    worker = Worker("a", saga_env(bootstrap, topic_prefix, SHARDS), tmp_path)
    worker.start()
    producer = Producer({**kafka_config, "linger.ms": 0})
    try:
        worker.wait_ready()
        _start(producer, layout, "before")
        wait_for(kafka_config, layout, {"before"}, 60)
        assert "before" in outcomes(kafka_config, layout), logs_of(tmp_path)

        worker_id = f"{topic_prefix}-a"
        groups = {
            f"{topic_prefix}.engine": (f"{worker_id}.engine", layout.commands),
            f"{topic_prefix}.activities.{QUEUE}": (
                f"{worker_id}.tasks.{QUEUE}",
                layout.task_queue(QUEUE),
            ),
        }
        for group, (instance, topic) in groups.items():
            # join under the worker's instance id: that fences the worker's consumer;
            # the worker joining again fences this one in turn
            intruder = _member(bootstrap, group, instance)
            intruder.subscribe([topic])
            fenced_back = _fatal_error(intruder, 30)
            intruder.close()
            assert fenced_back is not None, f"the worker never joined {group} again\n" + (
                logs_of(tmp_path)
            )

        fenced_at = time.time()
        _start(producer, layout, "after")
        wait_for(kafka_config, layout, {"after"}, SERVE_BOUND_S)
        done = outcomes(kafka_config, layout)
        assert "after" in done, f"no saga finished after the fencing\n{logs_of(tmp_path)}"
        print(f"a saga started after the fencing finished in {done['after'] - fenced_at:.2f}s")
        log = worker.log(1).read_text()
        assert "the engine's consumer fenced" in log, log[-3000:]
        assert f"the consumer of task queue '{QUEUE}' fenced" in log, log[-3000:]

        stopped = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.proc is not None
        try:
            status = worker.proc.wait(STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_BOUND_S}s after SIGTERM\n{logs_of(tmp_path)}")
        print(f"stopped {time.monotonic() - stopped:.2f}s after SIGTERM")
        assert status == 0, logs_of(tmp_path)
    finally:
        worker.stop()


@pytest.mark.timeout(180)
def test_a_worker_stuck_in_a_commit_still_stops_on_sigterm(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    """A transaction stuck in librdkafka (``send_offsets_to_transaction`` ignores its
    timeout while the group coordinator is down: librdkafka #5456, #5511) must not keep
    a stopping worker alive: it gives the commit ``call_timeout_s`` (15 s) from its
    start, then fences it with a new producer and stops. Simulated by an engine whose
    commit never returns."""
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    log_path = tmp_path / "held.log"
    proc = _patched_worker("held_commit_worker", kafka_config, topic_prefix, log_path)
    producer = Producer({**kafka_config, "linger.ms": 0})
    try:
        deadline = time.monotonic() + 60
        while "commit held" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            if "ready" in log_path.read_text().splitlines():
                _start(producer, layout, f"held-{int(time.monotonic())}")
            time.sleep(0.5)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(HELD_STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {HELD_STOP_BOUND_S}s after SIGTERM\n"
                        + log_path.read_text()[-3000:])
        print(f"stopped {time.monotonic() - stopped:.2f}s after SIGTERM")
        log = log_path.read_text()
        assert status == 0, log[-3000:]
        # the stop fenced it: the broker aborted what it held, so readers of those
        # partitions do not wait for the transaction's timeout
        assert "stuck transaction fenced" in log, log[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _history(config: dict[str, Any], layout: TopicLayout, wf_id: str) -> list[ev.Event]:
    events = []
    for msg in read_topic(config, layout.history, SHARDS):
        if msg.value() is None:
            continue
        record = WIRE.decode_history(msg.headers() or [], msg.value()).record
        if not isinstance(record, rec.WorkflowSnapshot) and record.workflow_id == wf_id:
            events.append(record.event)
    return events


@pytest.mark.timeout(180)
def test_a_commit_stuck_in_librdkafka_is_fenced_and_the_worker_serves_on(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    """A running engine whose transaction hangs in ``send_offsets_to_transaction`` (its
    records already produced) starts a new producer under its transactional id after
    ``stuck_commit_s``: the broker aborts the stuck transaction, the shards are rebuilt,
    and the saga it held finishes once, without a restart of the process."""
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    log_path = tmp_path / "stuck.log"
    proc = _patched_worker("stuck_offsets_worker", kafka_config, topic_prefix, log_path)
    producer = Producer({**kafka_config, "linger.ms": 0})
    try:
        deadline = time.monotonic() + 60
        while "ready" not in log_path.read_text().splitlines():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        began = time.time()
        _start(producer, layout, "held")
        wait_for(kafka_config, layout, {"held"}, STUCK_BOUND_S)
        log = log_path.read_text()
        assert "send_offsets_to_transaction hangs" in log, log[-3000:]
        done = outcomes(kafka_config, layout)
        assert "held" in done, f"the held saga never finished\n{log[-3000:]}"
        print(f"the held saga finished {done['held'] - began:.1f}s after its start")
        assert "stuck transaction fenced" in log, log[-3000:]
        assert proc.poll() is None, "the worker exited instead of fencing\n" + log[-3000:]

        events = _history(kafka_config, layout, "held")
        assert [e.seq for e in events] == list(range(1, len(events) + 1))  # nothing twice
        assert sum(isinstance(e, ev.WorkflowCompleted) for e in events) == 1

        _start(producer, layout, "after")  # the new producer serves the next one
        wait_for(kafka_config, layout, {"after"}, SERVE_BOUND_S)
        assert "after" in outcomes(kafka_config, layout), log_path.read_text()[-3000:]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_BOUND_S) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class _CommitFailsWhenLetGo:
    """The engine's producer, whose next commit waits to be let go, then fails as it did
    when a broker restart took the group's member ids (UNKNOWN_MEMBER_ID)."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self.let_go = threading.Event()
        self.waiting = threading.Event()

    def commit_transaction(self, *args: Any) -> Any:
        self.waiting.set()
        self.let_go.wait(60)
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_MEMBER_ID, "injected: unknown member"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


def _cycle_for(processor: ShardProcessor, seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        processor.cycle()


def _cycle_until(processor: ShardProcessor, done: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        processor.cycle()


@pytest.mark.timeout(180)
def test_a_fence_served_with_a_failed_commit_is_not_lost(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    """The fence and the failed commit came in one cycle in the broker-failover fault
    test (the coordinator restarted while a commit hung): the cycle dropped what it had
    fetched, to read it again after the rewind, and with it the fatal error a fenced
    consumer serves only once. The worker kept its dead consumer and owned no shard
    again. Here the engine's commit is held while another client fences its consumer,
    then fails; the next cycle fetches the fence. The processor must join again with a
    new consumer, take its shards back and decide the command once."""
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    worker_id = f"{topic_prefix}-fenced"
    processor = ShardProcessor(
        kafka_config,
        layout,
        lambda p: CounterShard(layout, p),
        ProcessorOptions(
            worker_id=worker_id,
            transaction_timeout_ms=10_000,
            heartbeat_interval_ms=500,
            group_watch_interval_s=None,
        ),
    )
    held = _CommitFailsWhenLetGo(processor._producer)
    processor._producer = held  # type: ignore[assignment]
    processor._subscribe()
    try:
        owns_all = lambda: processor.owned_shards == list(range(SHARDS))  # noqa: E731
        _cycle_until(processor, owns_all, 60, "never owned its shards")
        producer = Producer({**kafka_config, "linger.ms": 0})
        producer.produce(layout.commands, key=b"k", value=b"v", partition=0)
        producer.flush(10)
        _cycle_until(processor, held.waiting.is_set, 30, "the command was never committed")

        bootstrap = kafka_config["bootstrap.servers"]
        intruder = _member(bootstrap, f"{topic_prefix}.engine", f"{worker_id}.engine")
        intruder.subscribe([layout.commands])
        deadline = time.monotonic() + 30
        while not intruder.assignment():  # the group gave it the engine's member
            assert time.monotonic() < deadline, "the intruder never joined"
            intruder.poll(0.1)
        time.sleep(3.0)  # six heartbeats: the engine's consumer has been told it is fenced
        intruder.close()
        held.let_go.set()
        future = processor._in_flight
        assert future is not None
        futures.wait([future], 30)
        processor._producer = held._producer  # type: ignore[assignment]

        _cycle_until(processor, owns_all, 60, "the fenced processor never took its shards back")
        deadline = time.monotonic() + 30
        history: dict[bytes, list[tuple[int, bytes]]] = {}
        while b"k" not in history:  # read again after the rewind, committed this time
            assert time.monotonic() < deadline, "the command was never decided again"
            _cycle_for(processor, 0.5)
            history = history_by_key(kafka_config, layout)
        assert history[b"k"] == [(1, b"v")]
    finally:
        processor._shut_down()
