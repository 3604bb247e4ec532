"""``saga reset`` on Kafka, as an operator does it: a run that got three signals after
event N is reset to N; the new run sees them again, with ``--exclude-signals`` it does
not, and both runs say why (``saga history``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.pause_sagas import GATE_ENV, QUEUE, Collector, step

pytestmark = pytest.mark.integration
SHARDS = 2


@pytest.fixture
def client(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Client]:
    gate = tmp_path / "gate"
    gate.touch()  # the step returns at once
    monkeypatch.setenv(GATE_ENV, str(gate))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-reset")
    with (
        EngineWorker(kafka_config, layout, [Collector], options=options),
        ActivityWorker(kafka_config, QUEUE, [step], layout=layout),
        Client(kafka_config, layout=layout) as c,
    ):
        yield c


def saga(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_reset_to_event_n_with_and_without_the_signals_after_it(client: Client) -> None:
    handle = client.start("ops.collector", id="r-1", task_queue=QUEUE, wait_started=60)
    first_run = handle.run_id
    deadline = time.monotonic() + 60
    while not any(isinstance(e, ev.ActivityCompleted) for e in client.fetch_history("r-1").events):
        assert time.monotonic() < deadline, "step one did not complete"
        time.sleep(0.2)
    for text in ("a", "b", "c"):
        handle.signal("note", text, wait=30)
    assert handle.query("notes") == ["one", "a", "b", "c"]

    out = saga("reset", "r-1", "--to-event", "3", "--reason", "bad deploy", "--operator", "ann")
    second_run = out.split()[-1]
    assert out.startswith("reset r-1: new run ") and second_run != first_run
    current = client.get_handle("r-1")
    assert current.query("notes") == ["one", "a", "b", "c"], "the signals, delivered again"

    old = saga("history", "r-1", "--run-id", str(first_run)).splitlines()
    assert old[-1].split()[2] == "WorkflowTerminated"
    assert f"reset to event 3 as run {second_run}: bad deploy" in old[-1]
    new = saga("history", "r-1").splitlines()
    assert second_run in new[0] and "RUNNING" in new[0]
    assert f"reset from run {first_run} at event 3 by ann: bad deploy" in new[1]
    assert [line.split()[2] for line in new[2:]] == [
        "ActivityScheduled",
        "ActivityCompleted",
        "SignalReceived",
        "SignalReceived",
        "SignalReceived",
    ]

    out = saga(
        "reset",
        "r-1",
        "--to-event",
        "3",
        "--exclude-signals",
        "--reason",
        "without them",
        "--operator",
        "ann",
    )
    assert current.query("notes") == ["one"]
    current.signal("note", "end", wait=30)
    assert current.result(timeout=60) == ["one", "end"]
    assert client.get_handle("r-1").describe().run_id == out.split()[-1]

    refused = CliRunner().invoke(main, ["reset", "r-1", "--to-event", "99", "--reason", "x"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "reset refused: cannot reset to event 99" in refused.output
