"""200 transfer sagas on real Kafka and PostgreSQL, with and without a kill -9 mid-run.

Checks what a payments team would check: every saga completed or compensated,
exactly one outcome each, history without gaps or duplicates, every side effect
applied once (unique idempotency keys) and the money conserved.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.converter import DataConverter
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from tests.integration.kafka_reading import read_topic
from tests.integration.saga_process import saga_env, spawn_saga
from tests.integration.transfer_sagas import SCHEMA, Transfer

pytestmark = pytest.mark.integration
SHARDS = 4
ACCOUNTS = [f"acct-{i}" for i in range(20)]
OPENING = 10_000
WIRE, CONV = WireFormat(), DataConverter()


def spawn(bootstrap: str, prefix: str, dsn: str, name: str, logs: Path) -> subprocess.Popen[bytes]:
    args = ["worker", "--sagas", "tests.integration.transfer_sagas", "--task-queue", "payments"]
    args += ["--worker-id", f"{prefix}-{name}"]
    env = saga_env(bootstrap, prefix, SHARDS, TRANSFER_TEST_DSN=dsn)
    return spawn_saga(args, env, logs / f"{name}.log")


def outcomes(config: dict[str, Any], layout: TopicLayout) -> list[rec.Reply]:
    found = []
    for msg in read_topic(config, layout.replies, SHARDS):
        reply = WIRE.decode_reply(msg.headers(), msg.value()).record
        if reply.kind is rec.ReplyKind.RESULT:
            found.append(reply)
    return found


@pytest.mark.parametrize("crash", [False, True], ids=["steady", "kill-9-mid-run"])
def test_two_hundred_transfers(
    crash: bool,
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    database: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(database) as conn:
        conn.execute(SCHEMA)
        conn.cursor().executemany(
            "INSERT INTO accounts VALUES (%s, %s)", [(a, OPENING) for a in ACCOUNTS]
        )
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, ["payments"])
    bootstrap = kafka_config["bootstrap.servers"]
    rng = random.Random(2026)
    transfers = []
    for i in range(200):
        source = rng.choice(ACCOUNTS)
        target = (
            "closed-account" if i % 10 == 0 else rng.choice([a for a in ACCOUNTS if a != source])
        )
        transfers.append(Transfer(f"tx-{i}", source, target, rng.randrange(1, 300)))
    workers = [spawn(bootstrap, topic_prefix, database, "first", tmp_path)]
    producer = Producer(kafka_config)

    def send(batch: list[Transfer]) -> None:
        for t in batch:
            enc = WIRE.encode_command(
                rec.StartWorkflow(
                    workflow_id=t.transfer_id,
                    workflow_type="transfer.v1",
                    task_queue="payments",
                    input=[CONV.to_payload(t)],
                )
            )
            producer.produce(
                layout.commands,
                key=enc.key,
                value=enc.value,
                headers=list(enc.headers),
                partition=shard_for(t.transfer_id, SHARDS),
            )
        producer.flush(10)

    killed_after = None
    try:
        send(transfers[:100])
        if crash:
            deadline = time.monotonic() + 60
            while len(outcomes(kafka_config, layout)) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            workers[0].kill()  # SIGKILL with sagas, activities and transactions in flight
            workers[0].wait(10)
            killed_after = len(outcomes(kafka_config, layout))
            send(transfers[100:])
            workers.append(spawn(bootstrap, topic_prefix, database, "second", tmp_path))
        else:
            send(transfers[100:])
        deadline = time.monotonic() + 120
        done = outcomes(kafka_config, layout)
        while len({r.workflow_id for r in done}) < len(transfers) and time.monotonic() < deadline:
            time.sleep(1)
            done = outcomes(kafka_config, layout)
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(60)
    logs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("*.log"))
    if crash:
        assert killed_after is not None and killed_after < len(transfers), "crash was mid-run"

    # every saga completed or compensated, exactly once
    per_id = Counter(r.workflow_id for r in done)
    assert set(per_id) == {t.transfer_id for t in transfers}, logs
    assert max(per_id.values()) == 1, "a saga reported two outcomes"
    by_id = {r.workflow_id: r for r in done}
    for t in transfers:
        assert by_id[t.transfer_id].ok == (t.target != "closed-account"), by_id[t.transfer_id].error

    # history: one run per saga, sequence numbers without gap or duplicate
    seqs: dict[tuple[str, str], list[int]] = {}
    for msg in read_topic(kafka_config, layout.history, SHARDS):
        record = WIRE.decode_history(msg.headers(), msg.value()).record
        if not isinstance(record, rec.WorkflowSnapshot):
            seqs.setdefault((record.workflow_id, record.run_id), []).append(record.event.seq)
    assert len(seqs) == len(transfers)
    for key, found in seqs.items():
        assert found == list(range(1, len(found) + 1)), f"{key}: {found}"

    # side effects: applied once each; money conserved; balances add up
    with psycopg.connect(database) as conn:
        effects = conn.execute("SELECT transfer_id, op FROM side_effects").fetchall()
        total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()
        deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()
    ops = Counter(effects)
    for t in transfers:
        if t.target == "closed-account":
            assert (ops[(t.transfer_id, "debit")], ops[(t.transfer_id, "refund")]) == (1, 1)
            assert ops[(t.transfer_id, "credit")] == 0
        else:
            assert (ops[(t.transfer_id, "debit")], ops[(t.transfer_id, "credit")]) == (1, 1)
    assert total == (OPENING * len(ACCOUNTS),), "money was created or destroyed"
    assert deliveries is not None and deliveries[0] >= len(effects)
    print(
        f"crash={crash} effects={len(effects)} deliveries={deliveries[0]} "
        f"(redelivered={deliveries[0] - len(effects)})"
    )
