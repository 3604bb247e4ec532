"""The outbox relay on real PostgreSQL and Kafka, with an engine worker running the sagas.

What is proved: a row of a rolled-back transaction starts nothing; every committed
row starts exactly one run (history: one run id per workflow id; one RESULT reply
each), also when the relay is SIGKILLed between Kafka's ack and the mark and then
restarted (the batch is published twice, the engine starts it once); two relays
running at once never publish the same row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import workflow
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.migration.outbox import CRASH_HOOK_ENV, OutboxRelay, migrate
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.engine_shard import result_correlation_id
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
SHARDS = 4
QUEUE = "migration"
WIRE = WireFormat()


@workflow.defn(name="migration.echo")
async def echo(ctx: workflow.WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The trivial saga the tests start: a durable nap, then its input back."""
    await ctx.sleep(timedelta(milliseconds=50))
    return payload


# --- helpers shared with test_queue_bridge -------------------------------------------


def engine(config: dict[str, Any], layout: TopicLayout) -> EngineWorker:
    """An engine worker for ``echo`` (use it as a context manager)."""
    options = ProcessorOptions(worker_id=f"{layout.prefix}-w", transaction_timeout_ms=5000)
    return EngineWorker(config, layout, [echo], options=options)


def start_commands(config: dict[str, Any], layout: TopicLayout) -> list[rec.StartWorkflow]:
    """Every start command on the commands topic."""
    found = []
    for msg in read_topic(config, layout.commands, SHARDS):
        command = WIRE.decode_command(msg.headers(), msg.value()).record
        if isinstance(command, rec.StartWorkflow):
            found.append(command)
    return found


def runs_per_workflow(config: dict[str, Any], layout: TopicLayout) -> dict[str, set[str]]:
    """Run ids recorded in history, per workflow id."""
    runs: dict[str, set[str]] = {}
    for msg in read_topic(config, layout.history, SHARDS):
        record = WIRE.decode_history(msg.headers(), msg.value()).record
        if not isinstance(record, rec.WorkflowSnapshot):
            runs.setdefault(record.workflow_id, set()).add(record.run_id)
    return runs


def result_replies(config: dict[str, Any], layout: TopicLayout) -> Counter[str]:
    """How many RESULT replies each workflow id got."""
    found: Counter[str] = Counter()
    for msg in read_topic(config, layout.replies, SHARDS):
        reply = WIRE.decode_reply(msg.headers(), msg.value()).record
        if reply.kind is rec.ReplyKind.RESULT:
            assert reply.correlation_id == result_correlation_id(reply.workflow_id)
            assert reply.ok, reply.error
            found[reply.workflow_id] += 1
    return found


def wait_for_start_replies(
    config: dict[str, Any], layout: TopicLayout, want: int, timeout_s: float = 40
) -> Counter[str]:
    """START replies per correlation (request) id, once there are ``want`` of them in all:
    proof that the engine has processed every start command, re-published ones too."""
    deadline = time.monotonic() + timeout_s
    while True:
        found: Counter[str] = Counter()
        for msg in read_topic(config, layout.replies, SHARDS):
            reply = WIRE.decode_reply(msg.headers(), msg.value()).record
            if reply.kind is rec.ReplyKind.START:
                found[reply.correlation_id] += 1
        if found.total() >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def wait_for_results(
    config: dict[str, Any], layout: TopicLayout, ids: Iterable[str], timeout_s: float = 40
) -> Counter[str]:
    """RESULT replies once every id in ``ids`` has one (or the timeout passed)."""
    want = set(ids)
    deadline = time.monotonic() + timeout_s
    while True:
        got = result_replies(config, layout)
        if want <= set(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def assert_exactly_once(config: dict[str, Any], layout: TopicLayout, ids: set[str]) -> None:
    """One run per workflow id in history and one RESULT reply each; nothing else ran."""
    results = wait_for_results(config, layout, ids)
    assert set(results) == ids
    assert set(results.values()) == {1}, [k for k, n in results.items() if n > 1]
    runs = runs_per_workflow(config, layout)
    assert set(runs) == ids
    assert {len(r) for r in runs.values()} == {1}, "a workflow id got two runs"


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


@pytest.fixture
def outbox_db(database: str) -> str:
    with psycopg.connect(database) as conn:
        migrate(conn)
    return database


def insert(dsn: str, keys: Iterable[str], *, rollback: bool = False) -> None:
    """What the existing service does: outbox rows in its own transaction."""
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "INSERT INTO saga_outbox (business_key, workflow_type, task_queue, payload) "
            "VALUES (%s, 'migration.echo', %s, %s)",
            [(k, QUEUE, psycopg.types.json.Jsonb({"key": k})) for k in keys],
        )
        if rollback:
            conn.rollback()


def unpublished(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM saga_outbox WHERE published_at IS NULL").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def relays(
    kafka_config: dict[str, Any], layout: TopicLayout, outbox_db: str
) -> Iterator[list[OutboxRelay]]:
    started: list[OutboxRelay] = []
    yield started
    for relay in started:
        relay.stop()
        assert relay.error is None


# --- tests ----------------------------------------------------------------------------


def test_rolled_back_rows_start_nothing_committed_rows_start_once(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    outbox_db: str,
    relays: list[OutboxRelay],
) -> None:
    committed = [f"pay-{i}" for i in range(20)]
    insert(outbox_db, committed)
    insert(outbox_db, [f"rolled-back-{i}" for i in range(5)], rollback=True)
    insert(outbox_db, ["pay-3"])  # the same business key twice: still one saga
    with engine(kafka_config, layout):
        relay = OutboxRelay(outbox_db, kafka_config, layout, batch_size=8, poll_interval_s=0.5)
        relays.append(relay.start())
        assert_exactly_once(kafka_config, layout, set(committed))
    assert relay.metrics.rows_published == 21
    assert unpublished(outbox_db) == 0
    assert not any(
        s.workflow_id.startswith("rolled-back") for s in start_commands(kafka_config, layout)
    )
    print(f"lag max={relay.metrics.max_lag_s:.3f}s batches={relay.metrics.batches}")


def test_notify_wakes_an_idle_relay(
    kafka_config: dict[str, Any], layout: TopicLayout, outbox_db: str, relays: list[OutboxRelay]
) -> None:
    # a 30 s poll interval: only the trigger's NOTIFY can make the relay this fast
    relay = OutboxRelay(outbox_db, kafka_config, layout, poll_interval_s=30)
    relays.append(relay.start())
    time.sleep(1.0)  # idle, waiting on LISTEN
    lags = []
    for i in range(5):
        began = time.monotonic()
        insert(outbox_db, [f"notify-{i}"])
        while unpublished(outbox_db) and time.monotonic() - began < 10:
            time.sleep(0.01)
        lags.append(time.monotonic() - began)
    assert unpublished(outbox_db) == 0
    assert max(lags) < 2.0, lags
    pending, oldest = relay.backlog()
    assert (pending, oldest) == (0, 0.0)
    print(f"insert-to-published: {', '.join(f'{x * 1000:.0f}ms' for x in lags)}")


def spawn_relay(
    kafka_config: dict[str, Any], layout: TopicLayout, dsn: str, logs: Path, *, crash: bool
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
        "DATABASE_URL": dsn,
        "SAGA_TOPIC_PREFIX": layout.prefix,
        "SAGA_SHARDS": str(SHARDS),
    }
    env.pop(CRASH_HOOK_ENV, None)
    if crash:
        env[CRASH_HOOK_ENV] = "1"
    with (logs / "relay.log").open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "outbox",
                "relay",
                "--batch-size",
                "10",
                "--poll-interval",
                "0.5",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_relay_killed_between_publish_and_mark(
    kafka_config: dict[str, Any], layout: TopicLayout, outbox_db: str, tmp_path: Path
) -> None:
    keys = [f"order-{i}" for i in range(30)]
    insert(outbox_db, keys)
    with engine(kafka_config, layout):
        crashing = spawn_relay(kafka_config, layout, outbox_db, tmp_path, crash=True)
        try:
            assert crashing.wait(45) == -signal.SIGKILL, (tmp_path / "relay.log").read_text()
        finally:
            if crashing.poll() is None:
                crashing.kill()
        assert unpublished(outbox_db) == 30, "the killed batch must not be marked"
        first = {s.workflow_id for s in start_commands(kafka_config, layout)}
        assert len(first) == 10
        wait_for_results(kafka_config, layout, first)  # those runs close before the re-publish

        restarted = spawn_relay(kafka_config, layout, outbox_db, tmp_path, crash=False)
        try:
            assert_exactly_once(kafka_config, layout, set(keys))
        finally:
            restarted.terminate()
            assert restarted.wait(30) == 0, (tmp_path / "relay.log").read_text()
        published = Counter(s.request_id for s in start_commands(kafka_config, layout))
        assert sum(published.values()) == 40  # the killed batch went out twice...
        assert sorted(Counter(published.values()).items()) == [(1, 20), (2, 10)]
        # ...the engine answered every copy, and still ran each id once
        assert wait_for_start_replies(kafka_config, layout, 40) == published
        assert_exactly_once(kafka_config, layout, set(keys))
    assert unpublished(outbox_db) == 0


def test_two_relays_never_publish_the_same_row(
    kafka_config: dict[str, Any], layout: TopicLayout, outbox_db: str, relays: list[OutboxRelay]
) -> None:
    keys = [f"twin-{i}" for i in range(300)]
    with engine(kafka_config, layout):
        for _ in range(2):
            relay = OutboxRelay(outbox_db, kafka_config, layout, batch_size=15, poll_interval_s=0.2)
            relays.append(relay.start())
        for i in range(0, len(keys), 25):  # the service commits while both relays work
            insert(outbox_db, keys[i : i + 25])
        assert_exactly_once(kafka_config, layout, set(keys))
    published = Counter(s.request_id for s in start_commands(kafka_config, layout))
    assert len(published) == 300 and set(published.values()) == {1}
    shares = [r.metrics.rows_published for r in relays]
    assert sum(shares) == 300
    print(f"rows per relay: {shares}")
