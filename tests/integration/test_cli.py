"""The ``saga`` CLI as a user drives it: start, describe, history, replay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.e2e_sagas import charge_card, doomed, nap
from tests.integration.kafka_reading import read_topic
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("SAGA_SHARDS", "2")
    layout = TopicLayout(prefix=topic_prefix, shards=2)
    ensure_topics(admin, layout)
    with EngineWorker(
        kafka_config,
        layout,
        [nap, doomed],
        activities=[charge_card],
        options=ProcessorOptions(worker_id=f"{topic_prefix}-cli"),
    ):
        yield


def saga(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_start_describe_history_and_replay(cli_env: None) -> None:
    started = saga(
        "start", "e2e.nap", "--id", "cli-1", "--task-queue", "q", "--args", '["x", 50]', "--wait"
    )
    assert started.exit_code == 0, started.output
    assert '"rested:x"' in started.output

    described = saga("describe", "cli-1")
    assert json.loads(described.output)["status"] == "COMPLETED"

    shown = saga("history", "cli-1")
    lines = shown.output.splitlines()
    assert "COMPLETED" in lines[0]
    assert lines[1].split()[2:] == ["WorkflowStarted", "e2e.nap", "on", "q"]
    assert lines[-1].split()[-1] == "WorkflowCompleted"

    exported = saga("history", "cli-1", "--json")
    assert json.loads(exported.output)[0]["type"] == "WorkflowStarted"

    same = saga("replay", "cli-1", "--sagas", "tests.integration.e2e_sagas")
    assert same.exit_code == 0 and "COMPLETED" in same.output

    changed = CliRunner().invoke(
        main, ["replay", "cli-1", "--sagas", "tests.integration.e2e_sagas_v2"]
    )
    assert changed.exit_code == 1
    assert "NOT deterministic" in changed.output


def test_worker_retention_option_tombstones_closed_runs(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`saga worker --retention-hours`: a closed run is tombstoned once it has passed."""
    env = saga_env(kafka_config["bootstrap.servers"], topic_prefix, 2)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "SAGA_TOPIC_PREFIX", "SAGA_SHARDS"):
        monkeypatch.setenv(name, env[name])  # for the in-process `saga start` below
    layout = TopicLayout(prefix=topic_prefix, shards=2)
    ensure_topics(admin, layout)
    args = ["worker", "--sagas", "tests.integration.e2e_sagas"]
    args += ["--worker-id", f"{topic_prefix}-ret"]
    args += ["--retention-hours", "0.0005"]  # 1.8 s
    log_path = tmp_path / "worker.log"
    proc = spawn_saga(args, env, log_path)
    try:
        args = ["--id", "kept-briefly", "--task-queue", "q", "--args", '["x", 10]', "--wait"]
        started = saga("start", "e2e.nap", *args)
        assert started.exit_code == 0, started.output + log_path.read_text()[-2000:]
        deadline = time.monotonic() + 20
        mine: dict[bytes, bytes | None] = {}
        while time.monotonic() < deadline:
            latest = {m.key(): m.value() for m in read_topic(kafka_config, layout.history, 2)}
            mine = {k: v for k, v in latest.items() if k and k.startswith(b"kept-briefly/")}
            if mine and all(v is None for v in mine.values()):
                break
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
    assert mine, "the run wrote history"
    assert all(v is None for v in mine.values()), "every event and the snapshot tombstoned"


def test_a_failed_run_is_reported_plainly_by_start_describe_and_history(cli_env: None) -> None:
    args = ["--id", "cli-f", "--task-queue", "q", "--input", '"4242"', "--wait"]
    started = CliRunner().invoke(main, ["start", "e2e.doomed", *args])
    assert started.exit_code == 1
    assert "Traceback" not in started.output
    assert started.stderr.splitlines() == [
        "Error: workflow 'cli-f' ended FAILED.",
        "  error: ActivityError: activity 'e2e.charge_card' (seq 1) failed after 1 attempt(s):"
        " CardDeclined: card 4242 declined (non-retryable)",
        "  caused by: CardDeclined: card 4242 declined (non-retryable)",
    ]

    described = saga("describe", "cli-f")
    assert json.loads(described.output)["status"] == "FAILED"
    assert "WorkflowStatus" not in described.output

    shown = saga("history", "cli-f").output.splitlines()
    assert "FAILED" in shown[0]
    by_type = {line.split()[2]: " ".join(line.split()[3:]) for line in shown[1:]}
    assert by_type["ActivityScheduled"] == "e2e.charge_card #1 on q"
    assert by_type["ActivityFailed"] == (
        "e2e.charge_card #1 attempt 1: CardDeclined: card 4242 declined"
    )
    assert "CardDeclined: card 4242 declined" in by_type["WorkflowFailed"]
