"""The ``saga`` CLI as a user drives it: start, describe, history, replay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.e2e_sagas import nap

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
        kafka_config, layout, [nap], options=ProcessorOptions(worker_id=f"{topic_prefix}-cli")
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
    assert json.loads(described.output)["status"].endswith("COMPLETED")

    shown = saga("history", "cli-1")
    lines = shown.output.splitlines()
    assert "COMPLETED" in lines[0]
    assert (
        lines[1].split()[-1] == "WorkflowStarted" and lines[-1].split()[-1] == "WorkflowCompleted"
    )

    exported = saga("history", "cli-1", "--json")
    assert json.loads(exported.output)[0]["type"] == "WorkflowStarted"

    same = saga("replay", "cli-1", "--sagas", "tests.integration.e2e_sagas")
    assert same.exit_code == 0 and "COMPLETED" in same.output

    changed = CliRunner().invoke(
        main, ["replay", "cli-1", "--sagas", "tests.integration.e2e_sagas_v2"]
    )
    assert changed.exit_code == 1
    assert "NOT deterministic" in changed.output
