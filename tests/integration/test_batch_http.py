"""Batches through the HTTP API, on real Kafka and PostgreSQL: a dry run lists the
matching runs, a terminate batch ends exactly them, describe follows it to the end,
list shows it; a read-only token may read but not start or cancel; bad input is a 400."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.batch.spec import BATCH_TASK_QUEUE
from orchestrator.client import Client
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.visibility.projector import Projector
from orchestrator.visibility.store import VisibilityStore
from orchestrator.worker.batch_worker import BatchWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration import batch_sagas
from tests.integration.http_helpers import READ_TOKEN, api_client, running_api

pytestmark = pytest.mark.integration
SHARDS = 2


async def running(database: str, workflow_type: str) -> int:
    async with VisibilityStore(database) as store:
        return await store.count_runs(workflow_type=workflow_type, status="RUNNING")


async def test_batch_routes(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, database: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [BATCH_TASK_QUEUE])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-http")
    with (
        EngineWorker(kafka_config, layout, [batch_sagas.Waiter, batch_sagas.Other],
                     options=options),
        Projector(database, kafka_config, layout),
        BatchWorker(kafka_config, layout, database),
        Client(kafka_config, layout=layout) as client,
    ):
        for i in range(6):
            client.start(batch_sagas.Waiter, f"w-{i}", id=f"w-{i}", task_queue="q")
        client.start(batch_sagas.Other, "o-0", id="o-0", task_queue="q")
        deadline = time.monotonic() + 60
        while await running(database, "batch.waiter") < 6 or await running(
            database, "batch.other"
        ) < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.3)
        async with (
            running_api(kafka_config, topic_prefix, database_url=database) as base_url,
            api_client(base_url) as http,
            api_client(base_url, READ_TOKEN) as reader,
        ):
            body: dict[str, Any] = {
                "batch_id": "stop-waiters",
                "operation": {"op": "terminate", "reason": "INC-7"},
                "filter": {"workflow_type": "batch.waiter", "status": "RUNNING"},
                "rate": 0,
                "page_size": 4,
            }
            r = await http.post("/v1/batches", json=dict(body, dry_run=True))
            assert r.status_code == 200, r.text
            dry = r.json()
            assert dry["count"] == 6 and not dry["truncated"]
            assert sorted(run["workflow_id"] for run in dry["runs"]) == [f"w-{i}" for i in range(6)]

            r = await reader.post("/v1/batches", json=body)
            assert r.status_code == 403
            r = await http.post("/v1/batches", json=dict(body, operation={"op": "terminate"}))
            assert r.status_code == 400 and "reason" in r.json()["message"], r.text
            r = await http.post("/v1/batches", json=dict(body, operation={"op": "explode"}))
            assert r.status_code == 400, r.text

            r = await http.post("/v1/batches", json=body)
            assert r.status_code == 201, r.text
            assert r.headers["Location"] == "/v1/batches/stop-waiters"
            deadline = time.monotonic() + 60
            while True:
                r = await reader.get("/v1/batches/stop-waiters")
                assert r.status_code == 200, r.text
                batch = r.json()["batch"]
                if batch["status"] != "running":
                    break
                assert time.monotonic() < deadline, batch
                await asyncio.sleep(0.3)
            assert batch["status"] == "completed"
            assert (batch["total"], batch["listed"], batch["pages"]) == (6, 6, 2)
            assert batch["totals"]["done"] == 6 and batch["totals"]["failed"] == 0
            for i in range(6):
                assert client.get_handle(f"w-{i}").describe().status.name == "TERMINATED"
            assert client.get_handle("o-0").describe().status.name == "RUNNING"

            r = await reader.get("/v1/batches")
            assert r.status_code == 200
            assert [b["batch_id"] for b in r.json()["batches"]] == ["stop-waiters"]
            r = await reader.post("/v1/batches/stop-waiters/cancel", json={})
            assert r.status_code == 403
            r = await http.get("/v1/batches/nope")
            assert r.status_code in {404, 504}, r.text
