"""Engine workers as real processes: shards move between them and nothing is lost."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.converter import DataConverter
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from tests.integration.kafka_reading import read_topic
from tests.integration.raw_commands import produce_start
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 8
WIRE, CONV = WireFormat(), DataConverter()


def spawn_worker(bootstrap: str, prefix: str, name: str, log_dir: Path) -> subprocess.Popen[bytes]:
    args = ["worker", "--sagas", "tests.integration.e2e_sagas", "--worker-id", f"{prefix}-{name}"]
    return spawn_saga(args, saga_env(bootstrap, prefix, SHARDS), log_dir / f"{name}.log")


def start_commands(
    producer: Producer, layout: TopicLayout, ids: list[str], rng: random.Random
) -> None:
    for wf_id in ids:
        produce_start(producer, layout, wf_id, "e2e.nap", "none", [wf_id, rng.randrange(200, 1500)])
    producer.flush(10)


def results(config: dict[str, Any], layout: TopicLayout) -> Counter[str]:
    seen: Counter[str] = Counter()
    for msg in read_topic(config, layout.replies, SHARDS):
        reply = WIRE.decode_reply(msg.headers(), msg.value()).record
        if reply.kind is rec.ReplyKind.RESULT:
            assert reply.ok, reply.error
            seen[reply.workflow_id] += 1
    return seen


def test_workers_join_and_leave_during_a_run(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    bootstrap = kafka_config["bootstrap.servers"]
    rng = random.Random(3)
    ids = [f"nap-{i}" for i in range(300)]
    producer = Producer(kafka_config)
    workers = [spawn_worker(bootstrap, topic_prefix, n, tmp_path) for n in ("a", "b")]
    try:
        start_commands(producer, layout, ids[:100], rng)
        time.sleep(3)
        workers.append(spawn_worker(bootstrap, topic_prefix, "c", tmp_path))  # joins
        start_commands(producer, layout, ids[100:200], rng)
        time.sleep(3)
        workers[0].send_signal(signal.SIGTERM)  # "a" leaves cleanly
        assert workers[0].wait(30) == 0
        start_commands(producer, layout, ids[200:], rng)
        deadline = time.monotonic() + 90
        done = results(kafka_config, layout)
        while len(done) < len(ids) and time.monotonic() < deadline:
            time.sleep(1)
            done = results(kafka_config, layout)
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(30)
    logs = "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("*.log"))
    assert set(done) == set(ids), f"missing {sorted(set(ids) - set(done))[:5]}\n{logs}"
    assert max(done.values()) == 1, "a workflow completed twice"
    assert "restored shard" in (tmp_path / "c.log").read_text(), "the joiner took shards"
    # history: one run per workflow id, each with gapless sequence numbers
    runs: dict[str, set[str]] = {}
    seqs: dict[tuple[str, str], list[int]] = {}
    for msg in read_topic(kafka_config, layout.history, SHARDS):
        record = WIRE.decode_history(msg.headers(), msg.value()).record
        if isinstance(record, rec.WorkflowSnapshot):
            continue
        runs.setdefault(record.workflow_id, set()).add(record.run_id)
        seqs.setdefault((record.workflow_id, record.run_id), []).append(record.event.seq)
    assert all(len(r) == 1 for r in runs.values())
    for key, found in seqs.items():
        assert found == list(range(1, len(found) + 1)), f"{key}: {found}"


def test_kill_9_of_an_engine_worker_mid_run(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    bootstrap = kafka_config["bootstrap.servers"]
    rng = random.Random(5)
    ids = [f"nap-{i}" for i in range(200)]
    producer = Producer(kafka_config)
    workers = [spawn_worker(bootstrap, topic_prefix, n, tmp_path) for n in ("a", "b")]
    try:
        start_commands(producer, layout, ids[:120], rng)
        time.sleep(rng.uniform(1.5, 3.5))  # a random moment: timers pending, transactions in flight
        before = len(results(kafka_config, layout))
        workers[0].kill()
        workers[0].wait(10)
        start_commands(producer, layout, ids[120:], rng)
        deadline = time.monotonic() + 90
        done = results(kafka_config, layout)
        while len(done) < len(ids) and time.monotonic() < deadline:
            time.sleep(1)
            done = results(kafka_config, layout)
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(30)
    assert before < len(ids), "the crash happened mid-run"
    assert set(done) == set(ids), f"missing {sorted(set(ids) - set(done))[:5]}"
    assert max(done.values()) == 1, "a workflow completed twice"
