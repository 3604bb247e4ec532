"""The activity worker on real Kafka: out-of-order completion, contiguous commits,
timeouts, DLQ, graceful drain, and re-delivery after kill -9 (PostgreSQL ledger)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from orchestrator import activity
from orchestrator.converter import DataConverter
from orchestrator.exceptions import ApplicationError
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import (
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    WireFormat,
)
from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions

pytestmark = pytest.mark.integration

QUEUE = "work"
PARTITIONS = 4
CONV = DataConverter()
WIRE = WireFormat()


# --- activities --------------------------------------------------------------------


@activity.defn(name="nap")
async def nap(ms: int) -> int:
    await asyncio.sleep(ms / 1000)
    return ms


RELEASE = threading.Event()


@activity.defn(name="hold")
async def hold(ms: int) -> int:
    """Runs until the test sets RELEASE: a slow task whose end the test decides."""
    await asyncio.to_thread(RELEASE.wait)
    return ms


@activity.defn(name="doze")
def doze(ms: int) -> int:
    time.sleep(ms / 1000)
    return ms * 2


@activity.defn(name="beat_then_stall")
async def beat_then_stall(stall_ms: int) -> None:
    activity.heartbeat("step-1")
    await asyncio.sleep(stall_ms / 1000)


@activity.defn(name="refuse")
def refuse(reason: str) -> None:
    raise ApplicationError(
        reason, type="CardDeclined", non_retryable=True, next_retry_delay=timedelta(seconds=7)
    )


@activity.defn(name="whoami")
async def whoami() -> str:
    return activity.info().idempotency_key


ALL = [nap, hold, doze, beat_then_stall, refuse, whoami]


# --- helpers -----------------------------------------------------------------------


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=PARTITIONS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


@pytest.fixture
def held_tasks_released() -> Iterator[None]:
    """Releases held tasks at teardown (before the workers stop) if a test fails early."""
    RELEASE.clear()
    yield
    RELEASE.set()


def task(i: int, activity_type: str, *args: Any, **fields: Any) -> ActivityTask:
    return ActivityTask(
        workflow_id=f"wf-{i % 50}",
        run_id="run-1",
        activity_seq=i,
        activity_type=activity_type,
        attempt=1,
        task_queue=QUEUE,
        scheduled_time=int(time.time() * 1000),
        args=CONV.to_payloads(args),
        **fields,
    )


def produce_tasks(config: dict[str, Any], layout: TopicLayout, tasks: list[ActivityTask]) -> None:
    producer = Producer(config)
    for t in tasks:
        rec = WIRE.encode_task(t)
        producer.produce(layout.task_queue(QUEUE), rec.value, rec.key, headers=rec.headers)
    assert producer.flush(10) == 0


def read_commands(
    config: dict[str, Any],
    layout: TopicLayout,
    done: Callable[[list[Any]], bool],
    timeout_s: float = 30,
) -> list[tuple[int, bytes | None, Any]]:
    """(partition, key, decoded command) of the commands topic until ``done`` or timeout."""
    consumer = Consumer({**config, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(layout.commands, p, 0) for p in range(PARTITIONS)])
    got: list[tuple[int, bytes | None, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done([c for _, _, c in got]):
            for msg in consumer.consume(500, 0.1):
                assert msg.error() is None
                decoded = WIRE.decode_command(msg.headers(), msg.value())
                got.append((msg.partition() or 0, msg.key(), decoded.record))
    finally:
        consumer.close()
    return got


def outcomes(cmds: list[Any]) -> list[ActivityTaskCompleted | ActivityTaskFailed]:
    return [c for c in cmds if isinstance(c, ActivityTaskCompleted | ActivityTaskFailed)]


def committed(config: dict[str, Any], group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    # -1001 (nothing committed) on an empty partition means "at its start"
    return {tp.partition: max(tp.offset, 0) for tp in tps}


def end_offsets(config: dict[str, Any], topic: str) -> dict[int, int]:
    consumer = Consumer({**config, "group.id": "ends"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def worker_factory(
    kafka_config: dict[str, Any], layout: TopicLayout, group_id: str
) -> Iterator[Callable[..., ActivityWorker]]:
    started: list[ActivityWorker] = []

    def make(**options: Any) -> ActivityWorker:
        w = ActivityWorker(
            kafka_config,
            QUEUE,
            ALL,
            layout=layout,
            group_id=group_id,
            options=ActivityWorkerOptions(**{"session_timeout_ms": 6000, **options}),
        )
        started.append(w.start())
        return w

    yield make
    for w in started:
        w.stop()
    for w in started:
        w.join(30)
        assert w.error is None, w.error


# --- tests -------------------------------------------------------------------------


def test_200_tasks_out_of_order_commit_only_the_contiguous_prefix(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    group_id: str,
    worker_factory: Callable[..., ActivityWorker],
    held_tasks_released: None,
) -> None:
    rng = random.Random(4)
    # task 0 is held and first in its partition: nothing of that partition may be
    # committed until it finishes, however many tasks behind it are done
    tasks = [task(0, "hold", 4000)]
    tasks += [
        task(i, "nap" if i % 2 else "doze", rng.randint(0, 150) if i % 2 else rng.randint(0, 60))
        for i in range(1, 200)
    ]
    produce_tasks(kafka_config, layout, tasks)
    topic = layout.task_queue(QUEUE)
    ends = end_offsets(kafka_config, topic)
    worker = worker_factory(max_in_flight=64, sync_threads=8)
    wait_for(lambda: worker.stats.received > 0, 20, "the first task")
    started = time.monotonic()

    cmds = read_commands(kafka_config, layout, lambda c: len(outcomes(c)) >= 199, 30)
    fast_done = time.monotonic() - started
    by_seq = {o.activity_seq: o for o in outcomes([c for _, _, c in cmds])}
    assert 0 not in by_seq, "the slow task cannot be done yet"
    # the slow task's partition is stuck at its offset; the others are at their end
    consumer = Consumer({**kafka_config, "group.id": "probe"})
    slow_tp = None
    for p in range(PARTITIONS):
        consumer.assign([TopicPartition(topic, p, 0)])
        msgs = consumer.consume(1, 5)
        if msgs and msgs[0].key() == b"wf-0":
            slow_tp = p
    consumer.close()
    assert slow_tp is not None
    wait_for(
        lambda: all(
            committed(kafka_config, group_id, topic)[p] == ends[p]
            for p in range(PARTITIONS)
            if p != slow_tp
        ),
        10,
        "fast partitions to commit to their end",
    )
    assert committed(kafka_config, group_id, topic)[slow_tp] == 0
    RELEASE.set()

    cmds = read_commands(kafka_config, layout, lambda c: len(outcomes(c)) >= 200, 30)
    elapsed = time.monotonic() - started
    wait_for(lambda: committed(kafka_config, group_id, topic) == ends, 10, "all commits")

    results = outcomes([c for _, _, c in cmds])
    assert sorted(o.activity_seq for o in results) == list(range(200))
    for partition, key, command in cmds:
        assert key == command.workflow_id.encode()
        assert partition == shard_for(command.workflow_id, PARTITIONS)
    for o in results:
        assert isinstance(o, ActivityTaskCompleted)
        original = tasks[o.activity_seq]
        ms = CONV.from_payload(original.args[0], int)
        expected = ms * 2 if original.activity_type == "doze" else ms
        assert CONV.from_payload(o.result, int) == expected
    assert worker.stats.completed == 200
    print(
        f"\n199 fast tasks in {fast_done:.2f}s; all 200 in {elapsed:.2f}s "
        f"({199 / fast_done:.0f} tasks/s excluding the held one)"
    )


def test_start_to_close_and_heartbeat_timeouts(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    worker_factory: Callable[..., ActivityWorker],
) -> None:
    produce_tasks(
        kafka_config,
        layout,
        [
            task(1, "nap", 10_000, start_to_close_timeout_ms=300),
            task(2, "doze", 3_000, start_to_close_timeout_ms=300),
            task(3, "beat_then_stall", 10_000, heartbeat_timeout_ms=400),
            task(4, "nap", 10, start_to_close_timeout_ms=5_000),
        ],
    )
    started = time.monotonic()
    worker = worker_factory(heartbeat_throttle_s=0.1)
    cmds = read_commands(kafka_config, layout, lambda c: len(outcomes(c)) >= 4, 20)
    elapsed = time.monotonic() - started
    by_seq = {o.activity_seq: o for o in outcomes([c for _, _, c in cmds])}
    assert elapsed < 8  # nobody waited for the 10 s activities
    for seq, kind in ((1, "start_to_close"), (2, "start_to_close"), (3, "heartbeat")):
        failed = by_seq[seq]
        assert isinstance(failed, ActivityTaskFailed)
        assert failed.failure.type == "ActivityTimeoutError"
        assert CONV.from_payload(failed.failure.details[0], str) == kind
    assert isinstance(by_seq[4], ActivityTaskCompleted)
    beats = [c for _, _, c in cmds if isinstance(c, ActivityHeartbeat)]
    assert [CONV.from_payloads(b.details, [str]) for b in beats if b.activity_seq == 3] == [
        ["step-1"]
    ]
    assert worker.stats.timed_out == 3


def test_failures_and_unknown_activity_type(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    worker_factory: Callable[..., ActivityWorker],
) -> None:
    produce_tasks(
        kafka_config,
        layout,
        [
            task(1, "refuse", "insufficient funds"),
            task(2, "no_such_activity"),
            task(3, "nap", "not a number"),
            task(4, "whoami"),
        ],
    )
    worker_factory()
    cmds = read_commands(kafka_config, layout, lambda c: len(outcomes(c)) >= 4, 20)
    by_seq = {o.activity_seq: o for o in outcomes([c for _, _, c in cmds])}
    refused = by_seq[1]
    assert isinstance(refused, ActivityTaskFailed)
    assert (refused.failure.type, refused.failure.message) == ("CardDeclined", "insufficient funds")
    assert refused.failure.non_retryable
    assert refused.failure.next_retry_delay_ms == 7000
    unknown = by_seq[2]
    assert isinstance(unknown, ActivityTaskFailed)
    assert unknown.failure.non_retryable
    assert "no_such_activity" in unknown.failure.message
    bad_args = by_seq[3]
    assert isinstance(bad_args, ActivityTaskFailed)
    assert bad_args.failure.type == "PayloadConversionError"
    assert bad_args.failure.non_retryable
    who = by_seq[4]
    assert isinstance(who, ActivityTaskCompleted)
    assert CONV.from_payload(who.result, str) == "wf-4/run-1/4"


def test_garbage_goes_to_the_dlq_and_the_worker_keeps_going(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    group_id: str,
    worker_factory: Callable[..., ActivityWorker],
) -> None:
    topic = layout.task_queue(QUEUE)
    producer = Producer(kafka_config)
    producer.produce(topic, b"\x00\xffgarbage\x13", b"wf-1", partition=0)
    producer.flush(10)
    produce_tasks(kafka_config, layout, [task(1, "nap", 1)])  # wf-1: same partition
    worker_factory()
    read_commands(kafka_config, layout, lambda c: len(outcomes(c)) >= 1, 20)

    consumer = Consumer({**kafka_config, "group.id": "dlq-reader"})
    consumer.assign([TopicPartition(layout.dlq, 0, 0)])
    msgs: list[Any] = []
    deadline = time.monotonic() + 10
    while not msgs and time.monotonic() < deadline:
        msgs = consumer.consume(10, 0.2)
    time.sleep(0.5)
    msgs += consumer.consume(10, 0.2)  # and nothing more arrives
    consumer.close()
    assert len(msgs) == 1
    dead = msgs[0]
    assert dead.value() == b"\x00\xffgarbage\x13"
    assert dead.key() == b"wf-1"
    headers = dict(dead.headers() or [])
    assert b"missing" in headers["saga.dlq.reason"]
    assert headers["saga.dlq.source"] == f"{topic}/0/0".encode()
    ends = end_offsets(kafka_config, topic)
    wait_for(lambda: committed(kafka_config, group_id, topic)[0] == ends[0], 10, "commit past")


def test_graceful_shutdown_drains_running_tasks(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    group_id: str,
    worker_factory: Callable[..., ActivityWorker],
) -> None:
    tasks = [task(i, "nap" if i % 2 else "doze", 1500) for i in range(20)]
    produce_tasks(kafka_config, layout, tasks)
    worker = worker_factory(sync_threads=10)
    wait_for(lambda: worker.stats.started == 20, 20, "all tasks to start")
    stop_at = time.monotonic()
    worker.stop()
    worker.join(20)
    drained_in = time.monotonic() - stop_at
    assert worker.stats.completed == 20
    assert drained_in < 10
    topic = layout.task_queue(QUEUE)
    assert committed(kafka_config, group_id, topic) == end_offsets(kafka_config, topic)
    cmds = read_commands(kafka_config, layout, lambda c: len(outcomes(c)) >= 20, 10)
    assert sorted(o.activity_seq for o in outcomes([c for _, _, c in cmds])) == list(range(20))


# --- kill -9 ---------------------------------------------------------------------

WORKER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import psycopg
    from orchestrator import activity
    from orchestrator.log.topics import TopicLayout
    from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions

    dsn, bootstrap, prefix, group, hold_s = sys.argv[1:6]

    @activity.defn(name="charge")
    def charge(amount: int) -> str:
        key = activity.info().idempotency_key
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO attempts (idempotency_key, pid) VALUES (%s, %s)", (key, os.getpid())
            )
            conn.execute(
                "INSERT INTO effects (idempotency_key, amount) VALUES (%s, %s) "
                "ON CONFLICT (idempotency_key) DO NOTHING",
                (key, amount),
            )
        time.sleep(float(hold_s))
        return key

    worker = ActivityWorker(
        {"bootstrap.servers": bootstrap}, "work", [charge],
        layout=TopicLayout(prefix=prefix, shards=4), group_id=group,
        options=ActivityWorkerOptions(session_timeout_ms=6000),
    )
    worker.start()
    print("ready", flush=True)
    sys.stdin.read()  # EOF: graceful stop
    worker.stop()
    worker.join(30)
    """
)


def test_kill_9_mid_activity_redelivers_with_the_same_idempotency_key(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    group_id: str,
    database: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE attempts (idempotency_key text NOT NULL, pid int NOT NULL)")
        conn.execute("CREATE TABLE effects (idempotency_key text PRIMARY KEY, amount int)")
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)

    log_file = (tmp_path / "workers.log").open("a")

    def spawn(hold_s: float) -> subprocess.Popen[str]:
        args = [database, kafka_config["bootstrap.servers"], layout.prefix, group_id, str(hold_s)]
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=log_file,
            text=True,
        )

    def attempts() -> list[tuple[str, int]]:
        with psycopg.connect(database) as conn:
            return conn.execute("SELECT idempotency_key, pid FROM attempts ORDER BY 2").fetchall()

    produce_tasks(kafka_config, layout, [task(7, "charge", 125)])
    with spawn(hold_s=60) as first:
        try:
            try:
                wait_for(lambda: len(attempts()) == 1, 30, "the first attempt to start")
            except AssertionError:
                log_file.flush()
                raise AssertionError((tmp_path / "workers.log").read_text()[-3000:]) from None
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        finally:
            first.kill()
    topic = layout.task_queue(QUEUE)
    assert set(committed(kafka_config, group_id, topic).values()) == {0}

    with spawn(hold_s=0) as second:
        try:
            cmds = read_commands(kafka_config, layout, lambda c: len(outcomes(c)) >= 1, 40)
            assert second.stdin is not None
            second.stdin.close()  # graceful stop
            assert second.wait(30) == 0
        finally:
            second.kill()
            log_file.close()
    rows = attempts()
    assert [k for k, _ in rows] == ["wf-7/run-1/7", "wf-7/run-1/7"]
    assert {pid for _, pid in rows} == {first.pid, second.pid}
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT idempotency_key, amount FROM effects").fetchall() == [
            ("wf-7/run-1/7", 125)
        ]
    (done,) = outcomes([c for _, _, c in cmds])
    assert isinstance(done, ActivityTaskCompleted)
    assert CONV.from_payload(done.result, str) == "wf-7/run-1/7"
    assert committed(kafka_config, group_id, topic) == end_offsets(kafka_config, topic)
