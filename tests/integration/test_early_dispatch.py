"""Activity tasks sent ahead of their transaction (orchestrator/worker/shard/dispatch.py),
against a crash in between: the engine is SIGKILLed after it sent a saga's activity task
and before the transaction with the decision that scheduled it committed.

The activity may run twice, always under one idempotency key; the saga completes once;
no reply a client could read exists before the decision is committed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.client import Client
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard.records import headers_of
from tests.integration.early_sagas import QUEUE
from tests.integration.kafka_reading import read_topic, run_history
from tests.integration.raw_commands import produce_start
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 2
SAGAS = "tests.integration.early_sagas"
WIRE, CONV = WireFormat(), DataConverter()


def _wait(what: str, check: Any, timeout_s: float, logs: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs.glob("*.log"))
            raise AssertionError(f"{what}: not after {timeout_s}s\n{tails}")
        time.sleep(0.05)


def _history(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> list[ev.Event]:
    return run_history(config, layout, workflow_id, wire=WIRE)


def _replies(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> list[rec.Reply]:
    replies = [
        WIRE.decode_reply(headers_of(m), m.value()).record
        for m in read_topic(config, layout.replies, SHARDS)
    ]
    return [r for r in replies if r.workflow_id == workflow_id]


def _start(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> None:
    producer = Producer({**config, "linger.ms": 0})
    produce_start(producer, layout, workflow_id, "early.one_step", QUEUE, [workflow_id])
    assert producer.flush(10) == 0


@pytest.mark.timeout(240)
def test_engine_killed_between_an_early_task_and_its_commit(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    runs = tmp_path / "runs.txt"
    runs.touch()
    env = saga_env(kafka_config["bootstrap.servers"], topic_prefix, SHARDS)
    env["EARLY_RUNS_FILE"] = str(runs)
    engine_args = ["worker", "--sagas", SAGAS, "--worker-id", f"{topic_prefix}-engine"]
    activities = spawn_saga(
        ["worker", "--no-engine", "--task-queue", QUEUE, "--sagas", SAGAS],
        env,
        tmp_path / "activities.log",
    )
    held_log = tmp_path / "held-engine.log"
    with held_log.open("ab") as out:
        held = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.held_commit_worker", *engine_args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    engine: subprocess.Popen[bytes] | None = None
    try:
        _wait("held engine ready", lambda: "ready" in held_log.read_text(), 90, tmp_path)
        _start(kafka_config, layout, "early-1")
        # the activity ran on the task sent early, while its decision is not committed
        _wait("the early task ran", lambda: runs.read_text().strip() != "", 90, tmp_path)
        assert "commit held" in held_log.read_text()
        assert _history(kafka_config, layout, "early-1") == []
        assert _replies(kafka_config, layout, "early-1") == []

        held.kill()
        held.wait(30)
        engine = spawn_saga(engine_args, env, tmp_path / "engine.log")
        with Client(kafka_config, layout=layout) as client:
            result = client.get_handle("early-1").result(timeout=120)
        assert result == "noted early-1"

        attempts = runs.read_text().splitlines()
        keys = {line.split()[0] for line in attempts}
        assert 1 <= len(attempts) <= 2, attempts
        assert len(keys) == 1, attempts
        history = _history(kafka_config, layout, "early-1")
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        kinds = [type(e).__name__ for e in history]
        assert kinds.count("WorkflowStarted") == 1
        assert kinds.count("ActivityScheduled") == 1
        assert kinds.count("ActivityCompleted") == 1
        assert kinds.count("WorkflowCompleted") == 1
        completed = next(e for e in history if isinstance(e, ev.WorkflowCompleted))
        results = [
            r for r in _replies(kafka_config, layout, "early-1") if r.kind is rec.ReplyKind.RESULT
        ]
        assert len(results) == 1
        assert results[0].ok and results[0].result == completed.result
    finally:
        for proc in (held, engine, activities):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
