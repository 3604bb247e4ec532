"""Pause and unpause on Kafka, as an operator does it: ``saga pause`` a saga mid-step,
send it a signal, let its timer fire and its step finish, kill -9 the worker and start
it on a fresh disk, ``saga unpause``: the saga goes on from where it was, with the
signal applied, nothing lost or doubled."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.client._common import RunHistory
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.integration.pause_sagas import GATE_ENV, QUEUE
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 2


def saga(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def held(found: RunHistory) -> list[str]:
    return [e.kind for e in found.events if isinstance(e, ev.InputDeferred)]


def wait_for(
    client: Client, workflow_id: str, check: Callable[[RunHistory], bool], what: str
) -> RunHistory:
    deadline = time.monotonic() + 60
    while True:
        found = client.fetch_history(workflow_id)
        if check(found):
            return found
        assert time.monotonic() < deadline, f"{what}: {[type(e).__name__ for e in found.events]}"
        time.sleep(0.2)


def test_pause_mid_step_signal_timer_kill9_unpause(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = tmp_path / "gate"
    env = saga_env(kafka_config["bootstrap.servers"], topic_prefix, SHARDS, **{GATE_ENV: str(gate)})
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "SAGA_TOPIC_PREFIX", "SAGA_SHARDS"):
        monkeypatch.setenv(name, env[name])  # for the in-process `saga pause/unpause`
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    args = ["worker", "--sagas", "tests.integration.pause_sagas", "--task-queue", QUEUE]
    args += ["--worker-id", f"{topic_prefix}-w"]
    worker = spawn_saga(args, env, tmp_path / "worker-1.log")
    try:
        with Client(kafka_config, layout=layout) as client:
            handle = client.start("pause.saga", 8.0, id="held", task_queue=QUEUE, wait_started=60)
            wait_for(
                client,
                "held",
                lambda f: any(isinstance(e, ev.TimerStarted) for e in f.events),
                "step one and the timer under way",
            )
            saga("pause", "held", "--reason", "bank API down", "--operator", "ops@bank")
            described = handle.describe()
            assert described.is_open and described.paused is not None
            assert (described.paused.operator, described.paused.reason) == (
                "ops@bank",
                "bank API down",
            )

            handle.signal("note", "a", wait=30)
            wait_for(client, "held", lambda f: held(f) == ["signal", "timer"], "timer held")
            gate.touch()  # step one finishes while paused
            found = wait_for(client, "held", lambda f: len(held(f)) == 3, "step one's result held")
            assert held(found) == ["signal", "timer", "activity_completed"]
            assert handle.query("notes") == [], "a paused saga answers queries"
            shown = saga("history", "held").output.splitlines()
            assert "RUNNING PAUSED by ops@bank: bank API down" in shown[0]
            assert shown[-1].split()[2:] == [
                "InputDeferred",
                "activity_completed",
                "#1",
                "(applied",
                "on",
                "unpause)",
            ]
            assert json.loads(saga("describe", "held").output)["paused"]["operator"] == "ops@bank"
            names = [type(e).__name__ for e in found.events]
            assert names.count("ActivityScheduled") == 1, "nothing scheduled while paused"

            # kill -9, and a new start on a fresh disk: the pause and what it held
            # come back from the history topic alone
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
            shutil.rmtree(env["SAGA_STATE_DIR"], ignore_errors=True)
            worker = spawn_saga(args, env, tmp_path / "worker-2.log")
            assert handle.describe(timeout=60).paused is not None

            saga("unpause", "held", "--reason", "bank back", "--operator", "ops@bank")
            assert handle.result(timeout=60) == ["a", "one", "woke", "two"]
            found = client.fetch_history("held")
            assert handle.describe().status.name == "COMPLETED"
    finally:
        worker.terminate()
        worker.wait(30)
    names = [type(e).__name__ for e in found.events]
    for name, count in {
        "WorkflowPaused": 1,
        "WorkflowUnpaused": 1,
        "InputDeferred": 3,
        "SignalReceived": 1,
        "TimerFired": 1,
        "ActivityScheduled": 2,
        "ActivityCompleted": 2,
    }.items():
        assert names.count(name) == count, (name, names)
    paused = next(e for e in found.events if isinstance(e, ev.WorkflowPaused))
    unpaused = next(e for e in found.events if isinstance(e, ev.WorkflowUnpaused))
    assert (paused.operator, paused.reason) == ("ops@bank", "bank API down")
    assert (unpaused.operator, unpaused.reason) == ("ops@bank", "bank back")
