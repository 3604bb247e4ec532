"""``saga stack`` on Kafka: a running saga's tasks, where each waits (file:line and
function of the workflow code) and for what (the activity, the timer and its due
time); the same over HTTP and the client; a closed run is refused in one line."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration import pause_sagas
from tests.integration.http_helpers import READ_TOKEN, api_client, running_api
from tests.integration.pause_sagas import GATE_ENV, QUEUE, PausableSaga, step

pytestmark = pytest.mark.integration
SHARDS = 2
GATHER_LINE = next(
    n for n, text in enumerate(Path(pause_sagas.__file__).read_text().splitlines(), 1)
    if "await asyncio.gather(" in text
)


@pytest.fixture
def client(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Client]:
    gate = tmp_path / "gate"  # absent: the step waits
    monkeypatch.setenv(GATE_ENV, str(gate))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-stack")
    try:
        with (
            EngineWorker(kafka_config, layout, [PausableSaga], options=options),
            ActivityWorker(kafka_config, QUEUE, [step], layout=layout),
            Client(kafka_config, layout=layout) as c,
        ):
            yield c
            gate.touch()  # let the step's thread go before the workers stop
    finally:
        gate.touch()


def saga(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(result.output)


async def test_stack_of_a_running_saga(
    client: Client, kafka_config: dict[str, Any], topic_prefix: str
) -> None:
    handle = client.start("pause.saga", 600.0, id="s-1", task_queue=QUEUE, wait_started=60)
    deadline = time.monotonic() + 60
    while "activity pause.step" not in (tasks := handle.stack(timeout=30))[0].awaiting:
        assert time.monotonic() < deadline, tasks
        await asyncio.sleep(0.2)
    main_task = tasks[0]
    assert main_task.task == "main" and main_task.location is not None
    assert main_task.location.file == pause_sagas.__file__
    assert (main_task.location.line, main_task.location.function) == (GATHER_LINE, "run")
    assert "activity pause.step #1 (attempt 1, running)" in main_task.awaiting
    assert "timer timer/1 due 20" in main_task.awaiting, "the sleep, with its due time"

    out = saga("stack", "s-1").splitlines()
    assert out[0].startswith("main: awaiting all of: ")
    assert out[1] == f"    {pause_sagas.__file__}:{GATHER_LINE} in run"
    as_json = json.loads(saga("stack", "s-1", "--json"))
    assert as_json[0]["frames"][-1]["line"] == GATHER_LINE

    async with running_api(kafka_config, topic_prefix) as api, api_client(api, READ_TOKEN) as http:
        r = await http.get("/v1/workflows/s-1/stack")
        assert r.status_code == 200, r.text
        assert r.json()["tasks"][0]["awaiting"] == main_task.awaiting
        r = await http.get("/v1/workflows/nobody/stack")
        assert (r.status_code, r.json()["error"]) == (404, "workflow_not_found"), r.text

    handle.terminate("done looking", wait=30)
    closed = CliRunner().invoke(main, ["stack", "s-1"])
    assert closed.exit_code == 1 and "Traceback" not in closed.output
    assert "is TERMINATED" in closed.output and "hint:" in closed.output
