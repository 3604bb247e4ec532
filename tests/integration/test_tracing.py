"""One trace per saga, across processes and a kill -9 of the engine, with the
OpenTelemetry SDK installed in each process (tests/integration/traced_process.py):
the client's span, then each engine decision, each activity attempt and the reply,
every hop the child of the one that caused it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.client import Client
from orchestrator.log.headers import headers_of
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard.executions import trace_of
from tests.integration.kafka_reading import read_topic
from tests.integration.saga_process import saga_env
from tests.integration.traced_sagas import QUEUE

pytestmark = pytest.mark.integration
SHARDS = 2
WORKFLOW_ID = "traced-order-1"
WIRE = WireFormat()


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def traced(
    spans_file: Path, args: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.traced_process", str(spans_file), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_saga_is_one_trace_across_processes_and_an_engine_kill(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = kafka_config["bootstrap.servers"]
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    env = saga_env(bootstrap, topic_prefix, SHARDS)
    worker = ["saga", "worker", "--sagas", "tests.integration.traced_sagas"]
    engine_args = [*worker, "--worker-id", f"{topic_prefix}-engine"]
    activity_args = [*worker, "--no-engine", "--task-queue", QUEUE]
    files = {
        name: tmp_path / f"{name}.jsonl" for name in ("client", "engine", "engine2", "activities")
    }
    engine = traced(files["engine"], engine_args, env, tmp_path / "engine.log")
    activities = traced(files["activities"], activity_args, env, tmp_path / "activities.log")
    procs = [engine, activities]
    try:
        started = traced(
            files["client"],
            ["client", bootstrap, topic_prefix, WORKFLOW_ID],
            env,
            tmp_path / "client.log",
        )
        # the first step done, the saga sleeps 4 s: kill the engine then
        wait_for(lambda: len(spans(files["activities"])) == 1, 60, "the first activity")
        time.sleep(0.5)
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
        engine = traced(files["engine2"], engine_args, env, tmp_path / "engine2.log")
        procs.append(engine)
        with Client(kafka_config, layout=layout) as client:
            assert client.get_handle(WORKFLOW_ID).result(timeout=90) == 48
        assert started.wait(90) == 0, (tmp_path / "client.log").read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    client_spans = spans(files["client"])
    checkout = next(s for s in client_spans if s["name"] == "checkout")
    send = next(s for s in client_spans if s["name"] == "saga send StartWorkflow")
    assert send["parent_id"] == checkout["span_id"] and send["kind"] == "PRODUCER"
    trace_id = checkout["trace_id"]

    before_kill = [s for s in spans(files["engine"]) if s["name"] == "saga decide traced.steps"]
    after_kill = [s for s in spans(files["engine2"]) if s["name"] == "saga decide traced.steps"]
    attempts = [s for s in spans(files["activities"]) if s["name"] == "saga activity traced.double"]
    decisions = before_kill + after_kill
    assert before_kill and after_kill, "decisions before and after the kill"
    assert len(attempts) == 3
    everything = [*client_spans, *decisions, *attempts]
    assert {s["trace_id"] for s in everything} == {trace_id}, "one trace, whatever the process"

    by_id = {s["span_id"]: s for s in everything}
    first = decisions[0]
    assert first["parent_id"] == send["span_id"], "the start's decision is the send's child"
    assert first["attributes"]["saga.workflow_id"] == WORKFLOW_ID
    assert first["attributes"]["messaging.system"] == "kafka"
    for attempt in attempts:
        cause = by_id[attempt["parent_id"]]
        assert cause["name"] == "saga decide traced.steps", "an attempt is its decision's child"
        assert attempt["attributes"]["saga.outcome"] == "completed"
        assert attempt["attributes"]["saga.attempt"] == 1
    answered = [d for d in decisions if d["parent_id"] in {a["span_id"] for a in attempts}]
    assert len(answered) == 3, "each outcome's decision is the attempt's child"
    local = [s for s in spans(files["engine2"]) if s["name"] == "saga local activity traced.double"]
    assert len(local) == 1 and local[0]["trace_id"] == trace_id
    assert by_id[local[0]["parent_id"]]["name"] == "saga decide traced.steps"
    assert decisions[-1]["parent_id"] == local[0]["span_id"], "its outcome's decision"
    # the timer fired in the new engine: its decision hangs from the run's context,
    # which the history kept across the kill
    woken = [d for d in after_kill if "FireTimer" in d["attributes"]["saga.inputs"]]
    assert woken and woken[0]["parent_id"] == send["span_id"]
    assert decisions[-1]["attributes"]["saga.status"] == "COMPLETED"
    # the client saw the START reply (it carries the context of the command it answers)
    # and the RESULT, sent by the last decision
    received = {s["name"]: s for s in client_spans if s["name"].startswith("saga receive")}
    assert received["saga receive START"]["parent_id"] == send["span_id"]
    assert received["saga receive RESULT"]["parent_id"] == decisions[-1]["span_id"]
    assert received["saga receive RESULT"]["kind"] == "CONSUMER"
    assert received["saga receive RESULT"]["attributes"]["saga.ok"] is True

    # the START and RESULT replies (not those to the test's own untraced reads)
    replies = [
        trace_of(headers_of(m))
        for m in read_topic(kafka_config, layout.replies, SHARDS)
        if m.value() is not None
        and WIRE.decode_reply(headers_of(m), m.value()).record.kind
        in (rec.ReplyKind.START, rec.ReplyKind.RESULT)
    ]
    assert len(replies) == 2
    assert all(t is not None and t.split("-")[1] == trace_id for t in replies)
