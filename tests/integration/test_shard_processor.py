"""The shard processor's transactions: exactly-once under kill -9, forwarding, DLQ."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.shard.dlq import REASON_HEADER
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
APP = Path(__file__).with_name("counter_shard_app.py")
SHARDS = 4


def start_worker(bootstrap: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, str(APP), bootstrap, prefix, str(SHARDS)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_owning_all(log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if all(f"restored shard {p}:" in text for p in range(SHARDS)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"worker did not take all shards:\n{text[-2000:]}")


def history_by_key(
    config: dict[str, Any], layout: TopicLayout
) -> dict[bytes, list[tuple[int, bytes]]]:
    out: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
    for msg in read_topic(config, layout.history, SHARDS):
        key, _, n = msg.key().rpartition(b"/")
        out[key].append((int(n), msg.value()))
    return out


def wait_for_history(
    config: dict[str, Any], layout: TopicLayout, total: int, timeout_s: float
) -> dict[bytes, list[tuple[int, bytes]]]:
    deadline = time.monotonic() + timeout_s
    while True:
        history = history_by_key(config, layout)
        if sum(len(v) for v in history.values()) >= total or time.monotonic() > deadline:
            return history
        time.sleep(1)


def test_kill_9_mid_run_loses_and_duplicates_nothing(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    bootstrap = kafka_config["bootstrap.servers"]
    first = start_worker(bootstrap, topic_prefix, tmp_path / "worker-1.log")
    wait_owning_all(tmp_path / "worker-1.log")
    keys = [f"wf-{i}" for i in range(40)]
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    producer = Producer(kafka_config)
    rng = random.Random(7)
    kill_after = rng.randrange(800, 2200)  # commands sent before the crash
    second = None
    before_kill = 0
    try:
        for i in range(3000):
            key = rng.choice(keys)
            value = f"cmd-{i}".encode()
            producer.produce(
                layout.commands, key=key.encode(), value=value, partition=shard_for(key, SHARDS)
            )
            sent[key.encode()].append(value)
            if i % 100 == 0:
                producer.flush(10)
                time.sleep(0.02)
            if second is None and i == kill_after:
                producer.flush(10)
                time.sleep(0.3)
                first.kill()  # SIGKILL: no cleanup, possibly mid-transaction
                first.wait()
                before_kill = sum(len(v) for v in history_by_key(kafka_config, layout).values())
                second = start_worker(bootstrap, topic_prefix, tmp_path / "worker-2.log")
        producer.flush(10)
        history = wait_for_history(kafka_config, layout, 3000, timeout_s=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
    assert 0 < before_kill < 3000, "the crash must land in the middle of the run"
    for key, values in sent.items():
        events = history[key]
        assert [n for n, _ in events] == list(range(1, len(values) + 1)), (
            f"gap or duplicate in {key!r}"
        )
        assert [v for _, v in events] == values, f"{key!r} applied out of order or wrongly"


def test_wrong_partition_is_forwarded_and_garbage_dead_lettered(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    worker = start_worker(kafka_config["bootstrap.servers"], topic_prefix, tmp_path / "w.log")
    try:
        producer = Producer(kafka_config)
        key = "order-17"
        wrong = (shard_for(key, SHARDS) + 1) % SHARDS
        producer.produce(layout.commands, key=key.encode(), value=b"hello", partition=wrong)
        producer.produce(layout.commands, key=None, value=b"no key", partition=0)
        producer.produce(
            layout.commands,
            key=b"wf-poison",
            value=b"poison",
            partition=shard_for("wf-poison", SHARDS),
        )
        producer.produce(
            layout.commands,
            key=b"wf-after",
            value=b"after",
            partition=shard_for("wf-after", SHARDS),
        )
        producer.flush(10)
        history = wait_for_history(kafka_config, layout, 2, timeout_s=40)
        dlq = read_topic(kafka_config, layout.dlq, 1)
    finally:
        worker.terminate()
        worker.wait(15)
    assert history[key.encode()] == [(1, b"hello")]  # forwarded to its shard and applied
    assert history[b"wf-after"] == [(1, b"after")]  # the shard kept going
    reasons = sorted(dict(m.headers())[REASON_HEADER].decode() for m in dlq)
    assert reasons == [
        "command has no key (the workflow id)",
        "handler error: ValueError: poison command",
    ]
    assert b"wf-poison" not in history
