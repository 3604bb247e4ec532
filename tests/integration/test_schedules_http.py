"""Schedules through the HTTP API, on real Kafka and PostgreSQL: create, list (from the
visibility store), describe, update, pause, trigger, unpause, backfill, delete; a
read-only token may list and describe but not change; bad input is a 400."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.visibility.projector import Projector
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration import schedule_sagas
from tests.integration.http_helpers import READ_TOKEN, api_client, running_api

pytestmark = pytest.mark.integration
SHARDS = 2


async def listed(http: httpx.AsyncClient, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        r = await http.get("/v1/schedules")
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["schedules"]
        if len(found) == want:
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.3)


async def test_schedule_routes(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, database: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    options = ProcessorOptions(worker_id=f"{topic_prefix}-http", transaction_timeout_ms=5000)
    workflows = [schedule_sagas.quick]
    with (
        EngineWorker(kafka_config, layout, workflows, options=options),
        Projector(database, kafka_config, layout),
    ):
        async with (
            running_api(kafka_config, topic_prefix, database_url=database) as base_url,
            api_client(base_url) as http,
            api_client(base_url, READ_TOKEN) as reader,
        ):
            body = {
                "schedule_id": "reports",
                "spec": {"cron": ["0 6 * * 1-5"], "time_zone": "Europe/Paris", "jitter_s": 30},
                "action": {"workflow_type": "sched.quick", "task_queue": "q", "args": ["r"]},
                "policy": {"overlap": "buffer_one", "catchup_window_s": 600},
            }
            r = await http.post("/v1/schedules", json=body)
            assert r.status_code == 201, r.text
            assert r.headers["Location"] == "/v1/schedules/reports"
            created = r.json()["schedule"]
            assert created["policy"] == {"overlap": "buffer_one", "catchup_window_s": 600}
            assert len(created["next_times"]) == 5 and created["paused"] is False

            bad = dict(body, schedule_id="broken", spec={"cron": ["every day"]})
            r = await http.post("/v1/schedules", json=bad)
            assert r.status_code == 400 and "expected 5 fields" in r.json()["message"]
            r = await http.post("/v1/schedules", json=dict(body, schedule_id="a/b"))
            assert r.status_code == 400

            found = await listed(reader, 1)
            assert found[0]["schedule_id"] == "reports"
            assert found[0]["schedule"]["spec"]["time_zone"] == "Europe/Paris"
            r = await reader.get("/v1/schedules/reports")
            assert r.status_code == 200 and r.json()["schedule"]["schedule_id"] == "reports"
            r = await reader.post("/v1/schedules/reports/pause", json={})
            assert r.status_code == 403  # a read token cannot change a schedule

            r = await http.post(
                "/v1/schedules/reports/update",
                json={"spec": {"interval_s": 3600}, "note": "hourly now"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["schedule"]["spec"]["interval_s"] == 3600
            r = await http.post("/v1/schedules/reports/update", json={"spec": {"interval_s": 0}})
            assert r.status_code == 422 and r.json()["error"] == "update_rejected"

            r = await http.post("/v1/schedules/reports/pause", json={"note": "quiet"})
            assert r.status_code == 200 and r.json()["paused"] is True
            r = await http.post("/v1/schedules/reports/trigger", json={})
            assert r.status_code == 200, r.text
            fired = r.json()["workflow_id"]
            r = await http.get(f"/v1/workflows/{fired}/result", params={"wait": 20})
            assert r.json()["result"] == f"r:{fired}"
            r = await http.post("/v1/schedules/reports/unpause", json={})
            assert r.status_code == 200 and r.json()["paused"] is False

            r = await http.post(
                "/v1/schedules/reports/backfill",
                json={"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T03:00:00Z",
                      "overlap": "allow_all"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["workflow_ids"] == [
                f"reports-20260101T0{h}0000Z" for h in range(3)
            ]
            r = await http.get("/v1/schedules/reports")
            described = r.json()["schedule"]
            assert described["started"] == 4 and described["note"] == ""

            r = await http.delete("/v1/schedules/reports")
            assert r.status_code == 200 and r.json()["deleted"] is True
            r = await http.post("/v1/schedules/reports/pause", json={})
            assert r.status_code == 409, r.text  # the schedule's run has closed
            await listed(reader, 0)
            r = await http.get("/v1/schedules/nope")
            assert r.status_code == 404, r.text
