"""Bad input through the HTTP API on real Kafka, a real engine worker and PostgreSQL:
each is a clear 4xx (never a 500, never a 503 that invites a retry), and a route that
needs the shard's answer refuses a wait of 0 instead of timing out. The checks decided
before Kafka is asked are in tests/unit/http_api/test_http_bad_input.py."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.e2e_sagas import nap
from tests.integration.http_helpers import api_client, running_api
from tests.integration.http_sagas import Account

pytestmark = pytest.mark.integration

SHARDS = 2


@pytest.fixture
def engine(kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str) -> Iterator[None]:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    options = ProcessorOptions(worker_id=f"{topic_prefix}-bad", transaction_timeout_ms=5000)
    with EngineWorker(kafka_config, layout, [nap, Account], options=options):
        yield


@pytest.fixture
async def api(kafka_config: dict[str, Any], topic_prefix: str, engine: None) -> AsyncIterator[str]:
    async with running_api(kafka_config, topic_prefix) as base_url:
        yield base_url


async def start_account(http: httpx.AsyncClient, workflow_id: str) -> str:
    r = await http.post(
        "/v1/workflows",
        json={"workflow": "http.account", "id": workflow_id, "task_queue": "q", "input": 1},
    )
    assert r.status_code == 201, r.text
    run_id: str = r.json()["run_id"]
    return run_id


async def test_history_of_an_unknown_run_is_404_and_an_earlier_run_shows_no_latest_status(
    api: str,
) -> None:
    async with api_client(api) as http:
        first = await start_account(http, "acct-h")
        wf = "/v1/workflows/acct-h"
        for params in ({"run_id": "no-such-run"}, {"run_id": "no-such-run", "format": "replay"}):
            r = await http.get(f"{wf}/history", params=params)
            assert (r.status_code, r.json()["error"]) == (404, "workflow_not_found"), r.text
            assert "no-such-run" in r.json()["message"]

        r = await http.post(f"{wf}/reset", json={"reason": "test", "event_seq": 1})
        assert r.status_code == 200, r.text
        second = r.json()["run_id"]
        old = (await http.get(f"{wf}/history", params={"run_id": first})).json()
        assert (old["run_id"], old["events"][-1]["type"]) == (first, "WorkflowTerminated")
        assert (old["status"], old["parked"], old["paused"]) == (None, None, None)
        new = (await http.get(f"{wf}/history", params={"run_id": second})).json()
        assert (new["run_id"], new["status"]) == (second, "RUNNING")
        latest = (await http.get(f"{wf}/history")).json()
        assert (latest["run_id"], latest["status"]) == (second, "RUNNING")


async def test_routes_that_answer_with_the_shards_reply_refuse_a_wait_of_zero(api: str) -> None:
    async with api_client(api) as http:
        run_id = await start_account(http, "acct-z")
        wf = "/v1/workflows/acct-z"
        for method, path, body, params in [
            ("POST", f"{wf}/reset", {"reason": "r", "wait": 0}, None),
            ("POST", f"{wf}/repair", {"reason": "r", "wait": 0}, None),
            ("POST", f"{wf}/updates/withdraw", {"args": [1], "timeout": 0}, None),
            ("POST", f"{wf}/queries/balance", {"timeout": 0}, None),
            ("GET", f"{wf}/queries/balance", None, {"timeout": "0"}),
            ("GET", f"{wf}/stack", None, {"timeout": "0"}),
        ]:
            r = await http.request(method, path, json=body, params=params)
            assert (r.status_code, r.json()["error"]) == (400, "bad_request"), (path, r.text)
            assert "must be more than 0" in r.json()["message"], (path, r.text)
        # nothing was sent: the run was not reset and nothing was withdrawn
        assert (await http.get(wf)).json()["workflow"]["run_id"] == run_id
        assert (await http.get(f"{wf}/queries/balance")).json()["result"] == 1
        # 0 still means "do not wait" where the answer does not need the reply
        r = await http.post(f"{wf}/signals/deposit", json={"args": [2], "wait": 0})
        assert r.status_code == 202, r.text


async def test_numbers_beyond_64_bits_and_oversized_commands_are_4xx(
    api: str, kafka_config: dict[str, Any]
) -> None:
    async with api_client(api) as http:
        await start_account(http, "acct-n")
        wf = "/v1/workflows/acct-n"
        for path, body, message in [
            (f"{wf}/reset", {"reason": "r", "event_seq": 2**63}, "event_seq"),
            (f"{wf}/reset", {"reason": "r", "event_seq": True}, "event_seq"),
            (f"{wf}/repair", {"reason": "r", "retry": {"max_attempts": 2**63}}, "max_attempts"),
            (f"{wf}/repair", {"reason": "r", "retry": {"max_attempts": 1.5}}, "max_attempts"),
            ("/v1/schedules/s-1/trigger", {"overlap": 1}, "overlap must be a string"),
            (
                "/v1/schedules/s-1/backfill",
                {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "overlap": []},
                "overlap must be a string",
            ),
        ]:
            r = await http.post(path, json=body)
            assert (r.status_code, r.json()["error"]) == (400, "bad_request"), (path, r.text)
            assert message in r.json()["message"], (path, r.text)

        # under the 1 MiB body limit, but "é" is 2 bytes in the body and 6 in the record
        wide = "é" * 300_000

        def utf8(body: dict[str, Any]) -> bytes:
            return json.dumps(body, ensure_ascii=False).encode()

        start = {"workflow": "e2e.nap", "id": "wide", "task_queue": "q", "args": [wide, 1]}
        for path, body in [("/v1/workflows", start), (f"{wf}/signals/deposit", {"args": [wide]})]:
            r = await http.post(path, content=utf8(body))
            assert (r.status_code, r.json()["error"]) == (413, "payload_too_large"), r.text
            assert "the command would be too large" in r.json()["message"], r.text
        assert (await http.get("/v1/workflows/wide")).status_code == 404, "nothing started"


async def test_a_query_of_a_closed_run_is_409_workflow_closed(api: str) -> None:
    async with api_client(api) as http:
        await start_account(http, "acct-c")
        wf = "/v1/workflows/acct-c"
        assert (await http.post(f"{wf}/signals/close", json={})).status_code == 200
        r = await http.get(f"{wf}/result", params={"wait": 20})
        assert r.json()["status"] == "COMPLETED", r.text
        r = await http.get(f"{wf}/queries/balance")
        assert (r.status_code, r.json()["error"]) == (409, "workflow_closed"), r.text


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def visibility_open(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 20
    while (r := await http.get("/v1/stats")).status_code != 200:
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.1)


async def test_values_postgresql_refuses_are_400_not_503(
    kafka_config: dict[str, Any], topic_prefix: str, database: str, engine: None
) -> None:
    async with (
        running_api(kafka_config, topic_prefix, database_url=database) as base_url,
        api_client(base_url) as http,
    ):
        await visibility_open(http)
        for params, message in [
            ({"after": cursor([10**30, "w", "r"])}, "invalid cursor"),
            ({"after": cursor([0, "w\x00", "r"])}, "refused a value"),
            ({"build_id": "b\x00"}, "NUL"),
            ({"search": "x:1e400"}, "out of range"),
            ({"search": "x:a\x00"}, "NUL"),
        ]:
            r = await http.get("/v1/workflows", params=params)
            assert (r.status_code, r.json()["error"]) == (400, "bad_request"), (params, r.text)
            assert message in r.json()["message"], (params, r.text)
        r = await http.get("/v1/stats", params={"minutes": "5", "type": "t\x00"})
        assert r.status_code == 400, r.text
        for term in ("x:NaN", "x:Infinity"):  # not JSON: searched for as text
            r = await http.get("/v1/workflows", params={"search": term})
            assert r.json() == {"workflows": [], "next": None}, r.text


async def test_a_failed_visibility_query_hides_its_error_and_says_when_to_retry(
    kafka_config: dict[str, Any], topic_prefix: str, database: str, engine: None
) -> None:
    name = database.rsplit("/", 1)[1]

    def cut_connections() -> None:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )

    dry_run = {
        "operation": {"op": "cancel", "reason": "r"},
        "filter": {"workflow_type": "t"},
        "dry_run": True,
    }
    async with (
        running_api(kafka_config, topic_prefix, database_url=database) as base_url,
        api_client(base_url) as http,
    ):
        for method, path, body in [
            ("GET", "/v1/batches", None),
            ("GET", "/v1/schedules", None),
            ("POST", "/v1/batches", dry_run),
        ]:
            await visibility_open(http)
            cut_connections()
            r = await http.request(method, path, json=body)
            assert (r.status_code, r.json()["error"]) == (503, "visibility_unavailable"), r.text
            assert r.json()["message"] == (
                "the visibility database did not answer (see the server log)"
            )
            assert r.headers["Retry-After"] == "5"
