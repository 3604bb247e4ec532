"""``saga repair`` on Kafka, as an operator does it: a refund that failed its policy
while the bank was down is retried once the bank is back, and the saga ends
compensated; another one is skipped with a reason, recorded in history and shown by
``saga describe``; the HTTP route and the client say why a repair is refused."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.client import Client, WorkflowHandle
from orchestrator.engine.replayer import Replayer, history_to_json
from orchestrator.exceptions import ApplicationError, WorkflowFailedError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.http_helpers import READ_TOKEN, api_client, running_api
from tests.integration.repair_sagas import BANK_DOWN_ENV, QUEUE, book, order, refund, release

pytestmark = pytest.mark.integration
SHARDS = 2
RECORD = Path(__file__).parents[1] / "replay" / "histories" / "kafka_repair_skipped.json"
RECORD_ENV = "RECORD_REPAIR_HISTORY"
"""Set to save the skipped run's history for tests/replay (only on purpose)."""


@pytest.fixture
def bank_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    flag = tmp_path / "bank-down"
    flag.touch()
    monkeypatch.setenv(BANK_DOWN_ENV, str(flag))
    return flag


@pytest.fixture
def client(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    bank_down: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Client]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-repair")
    with (
        EngineWorker(kafka_config, layout, [order], options=options),
        ActivityWorker(kafka_config, QUEUE, [book, refund, release], layout=layout),
        Client(kafka_config, layout=layout) as c,
    ):
        yield c


def saga(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(result.output)


def failed_compensation(client: Client, workflow_id: str) -> WorkflowHandle:
    handle = client.start("repair.order", workflow_id, id=workflow_id, task_queue=QUEUE)
    with pytest.raises(WorkflowFailedError) as failed:
        handle.result(timeout=60)
    assert failed.value.status == "COMPENSATION_FAILED"
    return handle


def assert_replays(client: Client, workflow_id: str) -> None:
    """The repaired history, as Kafka has it, replays with the code (nothing more to do)."""
    events = client.fetch_history(workflow_id).events
    result = Replayer(workflows=[order]).replay(events)
    assert (result.events, result.status.name) == (len(events), "FAILED")
    if RECORD.parent.exists() and RECORD_ENV in os.environ:
        RECORD.write_text(history_to_json(events) + "\n")


def history_kinds(workflow_id: str) -> list[str]:
    lines = saga("history", workflow_id).splitlines()[1:]
    return [line.split()[2] for line in lines]


def test_a_refund_retried_by_an_operator_ends_the_saga_compensated(
    client: Client, bank_down: Path
) -> None:
    handle = failed_compensation(client, "o-retry")
    bank_down.unlink()  # the bank is back
    out = saga("repair", "o-retry", "--retry", "--max-attempts", "3", "--reason",
               "bank is back", "--operator", "ann")
    assert out.strip() == "repaired o-retry: retrying"
    with pytest.raises(WorkflowFailedError) as ended:
        handle.result(timeout=60)
    assert ended.value.status == "FAILED", "compensated: it ends with the shipping error"
    assert "no courier" in str(ended.value)
    kinds = history_kinds("o-retry")
    repaired = kinds.index("CompensationRepaired")
    assert kinds[repaired - 2:repaired] == ["CompensationFailed", "WorkflowCompensationFailed"]
    assert kinds[-2:] == ["CompensationCompleted", "WorkflowFailed"]
    lines = saga("history", "o-retry")
    assert "retry (new policy: 3 attempts) by ann: bank is back" in lines
    described = json.loads(saga("describe", "o-retry"))
    assert described["status"] == "FAILED"
    assert [(r["action"], r["operator"]) for r in described["repairs"]] == [("retry", "ann")]
    events = client.fetch_history("o-retry").events
    assert Replayer(workflows=[order]).replay(events).status.name == "FAILED"


def test_a_skipped_refund_is_recorded_and_the_stock_is_still_released(client: Client) -> None:
    handle = failed_compensation(client, "o-skip")
    refused = CliRunner().invoke(
        main, ["repair", "o-skip", "--skip", "repair.release", "--reason", "x"]
    )
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "'repair.release' is not a failed compensation" in refused.output
    assert "hint:" in refused.output
    out = saga("repair", "o-skip", "--skip", "repair.refund", "--reason",
               "refunded by phone, ticket 42", "--operator", "bo")
    assert out.strip() == "repaired o-skip: skipped repair.refund"
    with pytest.raises(WorkflowFailedError):
        handle.result(timeout=60)
    kinds = history_kinds("o-skip")
    after = kinds[kinds.index("CompensationRepaired"):]
    assert after == ["CompensationRepaired", "ActivityScheduled", "ActivityCompleted",
                     "CompensationCompleted", "WorkflowFailed"], "the stock, released"
    assert "skip repair.refund by bo: refunded by phone, ticket 42" in saga("history", "o-skip")
    assert_replays(client, "o-skip")
    [note] = handle.describe().repairs
    assert (note.action, note.activity_type, note.reason) == (
        "skip", "repair.refund", "refunded by phone, ticket 42"
    )
    with pytest.raises(ApplicationError, match="only a COMPENSATION_FAILED run"):
        handle.repair("again", operator="bo")
    usage = CliRunner().invoke(main, ["repair", "o-skip", "--reason", "x"])
    assert usage.exit_code == 2 and "give either --retry or --skip STEP" in usage.output


async def test_repair_over_http(
    client: Client, kafka_config: dict[str, Any], topic_prefix: str
) -> None:
    handle = await asyncio.to_thread(failed_compensation, client, "o-http")
    wf = "/v1/workflows/o-http"
    async with running_api(kafka_config, topic_prefix) as api:
        async with api_client(api, READ_TOKEN) as reader:
            r = await reader.post(f"{wf}/repair", json={"reason": "x"})
            assert r.status_code == 403, r.text
        async with api_client(api) as http:
            both = {"reason": "x", "skip": "repair.refund", "retry": {"max_attempts": 2}}
            r = await http.post(f"{wf}/repair", json=both)
            assert (r.status_code, r.json()["error"]) == (400, "bad_request"), r.text
            r = await http.post(f"{wf}/repair", json={"reason": "x", "retry": {"tries": 2}})
            assert r.status_code == 400 and "unknown fields ['tries']" in r.text
            r = await http.post(f"{wf}/repair", json={"reason": "x", "skip": "repair.book"})
            assert (r.status_code, r.json()["error"]) == (422, "command_rejected"), r.text
            r = await http.post(
                f"{wf}/repair", json={"reason": "refunded by hand", "skip": "repair.refund"}
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"workflow_id": "o-http", "skipped": "repair.refund"}
            with pytest.raises(WorkflowFailedError):
                await asyncio.to_thread(handle.result, 60)
            described = (await http.get(wf)).json()["workflow"]
            assert described["status"] == "FAILED"
            [note] = described["repairs"]
            assert (note["action"], note["activity_type"], note["reason"]) == (
                "skip", "repair.refund", "refunded by hand"
            )
            assert note["operator"].startswith("http ")
