"""The HTTP API as a user drives it: real Kafka, a real engine worker, a real server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.visibility.projector import Projector
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.e2e_sagas import nap
from tests.integration.http_helpers import (
    ADMIN_TOKEN,
    READ_TOKEN,
    api_client,
    bearer,
    running_api,
)
from tests.integration.http_sagas import Account

pytestmark = pytest.mark.integration

SHARDS = 2


@pytest.fixture
def engine(kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str) -> Iterator[None]:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    options = ProcessorOptions(worker_id=f"{topic_prefix}-http", transaction_timeout_ms=5000)
    with EngineWorker(kafka_config, layout, [nap, Account], options=options):
        yield


@pytest.fixture
async def api(kafka_config: dict[str, Any], topic_prefix: str, engine: None) -> AsyncIterator[str]:
    async with running_api(kafka_config, topic_prefix) as base_url:
        yield base_url


async def start(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await http.post("/v1/workflows", json=body)


async def test_start_result_describe_history(api: str) -> None:
    async with api_client(api) as http:
        r = await start(http, workflow="e2e.nap", id="nap-1", task_queue="q", args=["x", 30])
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        assert r.json() == {"workflow_id": "nap-1", "run_id": run_id, "confirmed": True}
        assert r.headers["Location"] == "/v1/workflows/nap-1"

        r = await http.get("/v1/workflows/nap-1/result", params={"wait": 20})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "workflow_id": "nap-1",
            "run_id": run_id,
            "done": True,
            "status": "COMPLETED",
            "result": "rested:x",
        }

        r = await http.get("/v1/workflows/nap-1")
        assert r.status_code == 200, r.text
        described = r.json()["workflow"]
        assert (described["run_id"], described["status"]) == (run_id, "COMPLETED")
        assert described["workflow_type"] == "e2e.nap" and described["is_open"] is False
        assert r.json()["visibility"] is None  # no database configured here

        r = await http.get("/v1/workflows/nap-1/history")
        assert r.status_code == 200, r.text
        history = r.json()
        assert (history["run_id"], history["status"]) == (run_id, "COMPLETED")
        types = [e["type"] for e in history["events"]]
        assert types[0] == "WorkflowStarted" and types[-1] == "WorkflowCompleted"
        assert types.count("TimerFired") == 2
        assert [e["seq"] for e in history["events"]] == list(range(1, len(types) + 1))
        assert history["events"][0]["input"] == ["x", 30]  # payloads decoded to JSON


async def test_start_is_idempotent_and_reuse_policy_conflicts_are_409(api: str) -> None:
    async with api_client(api) as http:
        first = await start(http, workflow="e2e.nap", id="nap-2", task_queue="q", args=["a", 300])
        again = await start(http, workflow="e2e.nap", id="nap-2", task_queue="q", args=["b", 300])
        assert first.status_code == again.status_code == 201
        assert first.json()["run_id"] == again.json()["run_id"]  # one execution per id

        running = await http.get("/v1/workflows/nap-2/result")  # wait=0: no waiting
        assert running.json()["done"] is False and running.json()["status"] == "RUNNING"
        done = await http.get("/v1/workflows/nap-2/result", params={"wait": 20})
        assert done.json()["result"] == "rested:a"

        refused = await start(
            http,
            workflow="e2e.nap",
            id="nap-2",
            task_queue="q",
            args=["c", 1],
            id_reuse_policy="reject_duplicate",
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "already_started"


async def test_signal_update_query_and_close(api: str) -> None:
    async with api_client(api) as http:
        r = await start(http, workflow="http.account", id="acct-1", task_queue="q", input=10)
        assert r.status_code == 201, r.text
        wf = "/v1/workflows/acct-1"

        r = await http.post(f"{wf}/signals/deposit", json={"args": [5]})
        assert (r.status_code, r.json()) == (
            200,
            {"workflow_id": "acct-1", "confirmed": True, "signal": "deposit"},
        )
        r = await http.get(f"{wf}/queries/balance")
        assert (r.status_code, r.json()["result"]) == (200, 15), r.text

        r = await http.post(f"{wf}/updates/withdraw", json={"args": [4]})
        assert (r.status_code, r.json()["result"]) == (200, 11), r.text
        r = await http.post(f"{wf}/updates/withdraw", json={"args": [100]})
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "update_rejected"
        assert "insufficient funds" in r.json()["message"]
        r = await http.post(f"{wf}/queries/balance", json={"args": []})
        assert r.json()["result"] == 11  # the refused update changed nothing

        r = await http.post(f"{wf}/queries/nope")
        assert r.status_code == 422 and r.json()["error"] == "query_failed", r.text
        r = await http.post(f"{wf}/updates/nope", json={"args": [1]})
        assert (r.status_code, r.json()["error"]) == (422, "update_rejected"), r.text
        r = await http.post(f"{wf}/signals/deposit", json={"args": ["lots"]})
        assert (r.status_code, r.json()["error"]) == (422, "command_rejected"), r.text
        r = await http.post(f"{wf}/signals/deposit", params={"run_id": "r-0"}, json={"args": [1]})
        assert (r.status_code, r.json()["error"]) == (404, "workflow_not_found"), r.text

        r = await http.post(f"{wf}/signals/close", json={"wait": 0})  # fire and forget
        assert (r.status_code, r.json()["confirmed"]) == (202, False)
        r = await http.get(f"{wf}/result", params={"wait": 20})
        assert (r.json()["status"], r.json()["result"]) == ("COMPLETED", 11)

        r = await http.post(f"{wf}/signals/deposit", json={"args": [1]})
        assert (r.status_code, r.json()["error"]) == (409, "workflow_closed"), r.text


async def test_start_priority_and_a_signal_retried_with_its_request_id(api: str) -> None:
    async with api_client(api) as http:
        r = await start(http, workflow="http.account", id="acct-p", task_queue="q", input=10,
                        priority=5, fairness_key="tenantA")
        assert r.status_code == 201, r.text
        described = (await http.get("/v1/workflows/acct-p")).json()["workflow"]
        assert (described["priority"], described["fairness_key"]) == (5, "tenantA")
        events = (await http.get("/v1/workflows/acct-p/history")).json()["events"]
        assert (events[0]["priority"], events[0]["fairness_key"]) == (5, "tenantA")

        wf = "/v1/workflows/acct-p"
        for _ in range(2):  # a caller's retry after a timeout: the same request id
            r = await http.post(f"{wf}/signals/deposit", json={"args": [5], "request_id": "dep-1"})
            assert r.status_code == 200, r.text
        r = await http.post(f"{wf}/signals/deposit", json={"args": [5]})  # a new signal
        assert r.status_code == 200, r.text
        r = await http.get(f"{wf}/queries/balance")
        assert r.json()["result"] == 20, r.text

        for body in ({"priority": "high"}, {"priority": 2**63}, {"fairness_key": 7}):
            r = await start(http, workflow="http.account", id="acct-bad", task_queue="q",
                            input=1, **body)
            assert (r.status_code, r.json()["error"]) == (400, "bad_request"), (body, r.text)
        r = await http.post(f"{wf}/signals/deposit", json={"args": [1], "request_id": ""})
        assert (r.status_code, r.json()["error"]) == (400, "bad_request"), r.text


async def test_cancel_and_terminate(api: str) -> None:
    async with api_client(api) as http:
        for wf_id in ("acct-c", "acct-t"):
            r = await start(http, workflow="http.account", id=wf_id, task_queue="q", input=1)
            assert r.status_code == 201, r.text

        r = await http.post("/v1/workflows/acct-c/cancel", json={"reason": "customer asked"})
        assert r.status_code == 200, r.text
        r = await http.post("/v1/workflows/acct-t/terminate", json={"reason": "operator"})
        assert r.status_code == 200, r.text

        cancelled = (await http.get("/v1/workflows/acct-c/result", params={"wait": 20})).json()
        assert (cancelled["done"], cancelled["status"]) == (True, "CANCELLED"), cancelled
        terminated = (await http.get("/v1/workflows/acct-t/result", params={"wait": 20})).json()
        assert (terminated["done"], terminated["status"]) == (True, "TERMINATED"), terminated
        events = (await http.get("/v1/workflows/acct-t/history")).json()["events"]
        assert events[-1]["type"] == "WorkflowTerminated" and events[-1]["reason"] == "operator"

        described = (await http.get("/v1/workflows/acct-t")).json()["workflow"]
        assert described["status"] == "TERMINATED"
        r = await http.post("/v1/workflows/acct-t/cancel")
        assert (r.status_code, r.json()["error"]) == (409, "workflow_closed"), r.text


async def test_pause_holds_signals_until_unpause(api: str) -> None:
    async with api_client(api) as http:
        r = await start(http, workflow="http.account", id="acct-p", task_queue="q", input=1)
        assert r.status_code == 201, r.text
        wf = "/v1/workflows/acct-p"
        r = await http.post(f"{wf}/pause", json={"reason": "audit", "operator": "ann"})
        assert r.status_code == 200, r.text
        paused = (await http.get(wf)).json()["workflow"]
        assert paused["status"] == "RUNNING"
        assert (paused["paused"]["operator"], paused["paused"]["reason"]) == ("ann", "audit")

        r = await http.post(f"{wf}/signals/deposit", json={"args": [5]})
        assert r.status_code == 200, r.text
        balance = (await http.get(f"{wf}/queries/balance")).json()["result"]
        assert balance == 1, "held while paused; queries still answer"

        r = await http.post(f"{wf}/unpause", json={"reason": "audit done"})
        assert r.status_code == 200, r.text
        assert (await http.get(wf)).json()["workflow"]["paused"] is None
        balance = (await http.get(f"{wf}/queries/balance")).json()["result"]
        assert balance == 6
        events = (await http.get(f"{wf}/history")).json()["events"]
        by_type = {e["type"]: e for e in events}
        assert by_type["WorkflowPaused"]["operator"] == "ann"
        assert by_type["WorkflowUnpaused"]["operator"].startswith("http ")
        assert by_type["InputDeferred"]["kind"] == "signal"


async def test_reset_to_an_event_with_and_without_later_signals(api: str) -> None:
    async with api_client(api) as http:
        r = await start(http, workflow="http.account", id="acct-r", task_queue="q", input=1)
        assert r.status_code == 201, r.text
        first_run = r.json()["run_id"]
        wf = "/v1/workflows/acct-r"
        for amount in (5, 7):
            r = await http.post(f"{wf}/signals/deposit", json={"args": [amount]})
            assert r.status_code == 200, r.text

        body = {"reason": "bad deploy", "event_seq": 2, "exclude_signals": True}
        r = await http.post(f"{wf}/reset", json=body)
        assert r.status_code == 200, r.text
        second_run = r.json()["run_id"]
        assert second_run != first_run
        balance = (await http.get(f"{wf}/queries/balance")).json()["result"]
        assert balance == 6, "events 1..2 (start, deposit 5); the deposit of 7 left out"

        r = await http.post(f"{wf}/reset", json={"reason": "again", "event_seq": 1})
        assert r.status_code == 200, r.text
        balance = (await http.get(f"{wf}/queries/balance")).json()["result"]
        assert balance == 6, "the deposit of 5 came after event 1: delivered again"

        old = (await http.get(f"{wf}/history", params={"run_id": first_run})).json()
        assert old["events"][-1]["type"] == "WorkflowTerminated"
        assert old["events"][-1]["reset_run_id"] == second_run
        assert old["events"][-1]["operator"].startswith("http ")
        r = await http.post(f"{wf}/reset", json={"reason": "nowhere", "event_seq": 99})
        assert (r.status_code, r.json()["error"]) == (409, "reset_refused"), r.text


async def test_unknown_workflow_is_404_everywhere(api: str) -> None:
    async with api_client(api) as http:
        wf = "/v1/workflows/no-such-id"
        for method, path, body in [
            ("GET", wf, None),
            ("GET", f"{wf}/result", None),
            ("GET", f"{wf}/history", None),
            ("POST", f"{wf}/signals/go", {"args": []}),
            ("POST", f"{wf}/cancel", None),
            ("POST", f"{wf}/terminate", {"reason": "x"}),
            ("POST", f"{wf}/pause", None),
            ("POST", f"{wf}/unpause", None),
            ("POST", f"{wf}/reset", {"reason": "x"}),
            ("POST", f"{wf}/repair", {"reason": "x"}),
            ("POST", f"{wf}/updates/withdraw", {"args": [1]}),
            ("GET", f"{wf}/queries/balance", None),
            ("GET", f"{wf}/stack", None),
        ]:
            r = await http.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"] == "workflow_not_found", (method, path, r.text)
        r = await http.get("/v1/nothing-here")
        assert (r.status_code, r.json()["error"]) == (404, "not_found")


ROUTES: list[tuple[str, str]] = [
    ("POST", "/v1/workflows"),
    ("GET", "/v1/workflows"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/workflows/w-1"),
    ("GET", "/v1/workflows/w-1/result"),
    ("GET", "/v1/workflows/w-1/history"),
    ("POST", "/v1/workflows/w-1/signals/go"),
    ("POST", "/v1/workflows/w-1/cancel"),
    ("POST", "/v1/workflows/w-1/terminate"),
    ("POST", "/v1/workflows/w-1/pause"),
    ("POST", "/v1/workflows/w-1/unpause"),
    ("POST", "/v1/workflows/w-1/reset"),
    ("POST", "/v1/workflows/w-1/repair"),
    ("POST", "/v1/workflows/w-1/updates/u"),
    ("GET", "/v1/workflows/w-1/queries/q"),
    ("POST", "/v1/workflows/w-1/queries/q"),
    ("GET", "/v1/workflows/w-1/stack"),
]


async def test_every_route_needs_a_token_and_tokens_never_reach_the_logs(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-0123456789abcdef"
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        assert (await http.get("/healthz")).status_code == 200  # the one open route
        for method, path in ROUTES:
            r = await http.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert r.json()["error"] == "unauthorized"
            r = await http.request(method, path, json={}, headers=bearer(wrong))
            assert r.status_code == 401, (method, path, r.text)
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
            r = await http.request(method, path, json={}, headers={"Authorization": wrong})
            assert r.status_code == 401, (method, path)  # not a Bearer credential

        # the right tokens get past authentication (whatever the route answers next)
        for method, path in ROUTES:
            r = await http.request(method, path, json={}, headers=bearer(ADMIN_TOKEN))
            assert r.status_code not in (401, 403), (method, path, r.text)
            r = await http.request(method, path, json={}, headers=bearer(READ_TOKEN))
            writes = method == "POST" and "/queries/" not in path
            assert (r.status_code == 403) is writes, (method, path, r.text)
            if writes:
                assert r.json()["error"] == "forbidden"

        # a workflow id that reads like a query route does not make a write a read
        r = await http.post(
            "/v1/workflows/x%2Fqueries%2Fy/cancel", json={}, headers=bearer(READ_TOKEN)
        )
        assert (r.status_code, r.json()["error"]) == (403, "forbidden"), r.text

    await asyncio.sleep(0.2)  # let the access log lines of the last requests land
    logged = caplog.text
    assert "refused POST /v1/workflows" in logged and "unknown token" in logged
    assert "aiohttp.access" in {r.name for r in caplog.records}
    for token in (wrong, ADMIN_TOKEN, READ_TOKEN):
        assert token not in logged


async def test_malformed_requests_are_400_and_huge_bodies_413(api: str) -> None:
    async with api_client(api) as http:

        async def post(path: str, content: bytes | str, **headers: str) -> httpx.Response:
            return await http.post(
                path, content=content, headers={"Content-Type": "application/json", **headers}
            )

        cases: list[tuple[str, bytes | str, str]] = [
            ("/v1/workflows", "{not json", "not valid JSON"),
            ("/v1/workflows", "[1, 2]", "must be a JSON object"),
            ("/v1/workflows", "", "body is required"),
            ("/v1/workflows", b"\xff\xfe", "not UTF-8"),
            ("/v1/workflows", '{"workflow": "e2e.nap"}', "missing fields: id, task_queue"),
            (
                "/v1/workflows",
                '{"workflow": "e2e.nap", "id": "a", "task_queue": "q", "x": 1}',
                "unknown fields: x",
            ),
            (
                "/v1/workflows",
                '{"workflow": "e2e.nap", "id": " a", "task_queue": "q"}',
                "outer spaces",
            ),
            (
                "/v1/workflows",
                '{"workflow": "e2e.nap", "id": "a\\u0000b", "task_queue": "q"}',
                "non-printable",
            ),
            (
                "/v1/workflows",
                '{"workflow": "bad name!", "id": "a", "task_queue": "q"}',
                "workflow must match",
            ),
            (
                "/v1/workflows",
                '{"workflow": "w", "id": "a", "task_queue": "q", "args": 3}',
                "args must be a JSON array",
            ),
            (
                "/v1/workflows",
                '{"workflow": "w", "id": "a", "task_queue": "q", "input": 1, "args": []}',
                "not both",
            ),
            (
                "/v1/workflows",
                '{"workflow": "w", "id": "a", "task_queue": "q", "wait": 61}',
                "wait must be between",
            ),
            (
                "/v1/workflows",
                '{"workflow": "w", "id": "a", "task_queue": "q", "input": NaN}',
                "not valid JSON",
            ),
            (
                "/v1/workflows",
                '{"workflow": "w", "id": "a", "task_queue": "q", "id_reuse_policy": "x"}',
                "id_reuse_policy must be one of",
            ),
            ("/v1/workflows", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
            ("/v1/workflows/w-1/terminate", "{}", "missing fields: reason"),
            ("/v1/workflows/w-1/signals/go", '{"args": {"a": 1}}', "args must be a JSON array"),
            ("/v1/workflows/w-1/updates/u", '{"timeout": "soon"}', "timeout must be a number"),
        ]
        for path, content, message in cases:
            r = await post(path, content)
            assert r.status_code == 400, (path, content[:80], r.text)
            assert r.json()["error"] == "bad_request"
            assert message in r.json()["message"], (path, content[:80], r.text)

        r = await post(
            "/v1/workflows",
            '{"workflow": "e2e.nap", "id": "a", "task_queue": "q"}',
            traceparent="00-nothex-00-01",
        )
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        r = await http.get("/v1/workflows/w-1/result", params={"wait": "soon"})
        assert r.status_code == 400
        r = await http.get("/v1/workflows/w-1/history", params={"run": "x"})
        assert r.status_code == 400 and "unknown query parameters: run" in r.json()["message"]

        huge = (
            '{"workflow": "e2e.nap", "id": "a", "task_queue": "q", "input": "'
            + "x" * (1 << 20)
            + '"}'
        )
        r = await post("/v1/workflows", huge)
        assert (r.status_code, r.json()["error"]) == (413, "payload_too_large"), r.text

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
            for _ in range(40):
                yield b"x" * 32_768

        r = await http.post("/v1/workflows", content=chunks())
        assert r.status_code == 413, r.text
        r = await http.put("/v1/workflows")
        assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")


async def test_workflow_ids_with_slashes_and_unicode_round_trip(api: str) -> None:
    async with api_client(api) as http:
        for wf_id in ("legacy.orders/0/15", "commande-été 7"):
            r = await start(http, workflow="e2e.nap", id=wf_id, task_queue="q", args=["s", 10])
            assert r.status_code == 201, r.text
            r = await http.get(r.headers["Location"] + "/result", params={"wait": 20})
            assert (r.status_code, r.json()["workflow_id"]) == (200, wf_id), r.text
            assert r.json()["result"] == "rested:s"


async def test_list_and_stats_say_503_without_a_database(api: str) -> None:
    async with api_client(api) as http:
        for path in ("/v1/workflows", "/v1/stats"):
            r = await http.get(path)
            assert (r.status_code, r.json()["error"]) == (503, "visibility_disabled"), r.text
            assert "DATABASE_URL" in r.json()["message"]
        health = (await http.get("/healthz")).json()
        assert health == {"status": "ok", "kafka": "connected", "visibility": "disabled"}


async def test_list_search_page_and_stats_from_the_projection(
    kafka_config: dict[str, Any], topic_prefix: str, engine: None, database: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    accounts = {"acct-a": ("acme", 1), "acct-b": ("globex", 2), "acct-c": ("acme", 3)}
    async with (
        running_api(kafka_config, topic_prefix, database_url=database) as base_url,
        api_client(base_url) as http,
    ):
        with Projector(database, kafka_config, layout):
            for wf_id, (customer, priority) in accounts.items():
                r = await start(
                    http,
                    workflow="http.account",
                    id=wf_id,
                    task_queue="q",
                    input=0,
                    search_attributes={"customer": customer, "priority": priority},
                )
                assert r.status_code == 201, r.text
            for wf_id in ("nap-a", "nap-b"):
                r = await start(http, workflow="e2e.nap", id=wf_id, task_queue="q", args=["z", 5])
                assert r.status_code == 201, r.text
                r = await http.get(f"/v1/workflows/{wf_id}/result", params={"wait": 20})
                assert r.json()["status"] == "COMPLETED"

            deadline = time.monotonic() + 30
            while True:  # the projection trails the log by a little
                stats = (await http.get("/v1/stats")).json()
                if stats == {"counts": {"RUNNING": 3, "COMPLETED": 2}, "total": 5}:
                    break
                assert time.monotonic() < deadline, stats
                await asyncio.sleep(0.2)

        windows = (await http.get("/v1/stats", params={"minutes": 10, "type": "e2e.nap"})).json()
        naps = windows["minutes"]
        assert sum(m["closed"] for m in naps) == 2 and sum(m["started"] for m in naps) == 2
        assert {m["workflow_type"] for m in naps} == {"e2e.nap"}
        assert all(m["start_to_close_ms"]["p50"] is not None for m in naps if m["closed"])
        r = await http.get("/v1/stats", params={"minutes": "0"})
        assert r.status_code == 400, r.text

        async def ids(**params: Any) -> list[str]:
            r = await http.get("/v1/workflows", params=params)
            assert r.status_code == 200, r.text
            return [row["workflow_id"] for row in r.json()["workflows"]]

        everything = await ids()
        assert sorted(everything) == sorted([*accounts, "nap-a", "nap-b"])
        assert set(await ids(status="running")) == set(accounts)
        assert set(await ids(status="COMPLETED")) == {"nap-a", "nap-b"}
        assert set(await ids(type="e2e.nap")) == {"nap-a", "nap-b"}
        assert set(await ids(search="customer:acme")) == {"acct-a", "acct-c"}
        assert await ids(search="priority:2") == ["acct-b"]  # a JSON number
        assert await ids(search='priority:"2"') == []  # a string is not the number
        r = await http.get(
            "/v1/workflows", params=[("search", "customer:acme"), ("search", "priority:3")]
        )
        assert [row["workflow_id"] for row in r.json()["workflows"]] == ["acct-c"]

        first = (await http.get("/v1/workflows", params={"limit": 2})).json()
        assert len(first["workflows"]) == 2 and first["next"]
        rest = (
            await http.get("/v1/workflows", params={"limit": 10, "after": first["next"]})
        ).json()
        assert rest["next"] is None
        paged = [row["workflow_id"] for row in first["workflows"] + rest["workflows"]]
        assert paged == everything  # newest first, no gap, no repeat

        row = next(
            r for r in rest["workflows"] + first["workflows"] if r["workflow_id"] == "acct-b"
        )
        assert row["search_attributes"] == {"customer": "globex", "priority": 2}
        described = (await http.get("/v1/workflows/acct-b")).json()
        assert described["visibility"]["status"] == "RUNNING"
        assert described["visibility"]["run_id"] == described["workflow"]["run_id"]

        for params in (
            {"after": "garbage"},
            {"status": "sleepy"},
            {"limit": 0},
            {"search": "novalue"},
        ):
            r = await http.get("/v1/workflows", params=params)
            assert r.status_code == 400, (params, r.text)
        health = (await http.get("/healthz")).json()
        assert health["visibility"] == "ok"


async def test_a_lost_database_connection_is_503_then_recovers(
    kafka_config: dict[str, Any], topic_prefix: str, engine: None, database: str
) -> None:
    async with (
        running_api(kafka_config, topic_prefix, database_url=database) as base_url,
        api_client(base_url) as http,
    ):
        deadline = time.monotonic() + 20
        while (r := await http.get("/v1/stats")).status_code != 200:  # the store opens
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.1)
        assert r.json() == {"counts": {}, "total": 0}
        name = database.rsplit("/", 1)[1]
        with psycopg.connect(database, autocommit=True) as admin_conn:
            killed = admin_conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            ).fetchone()
        assert killed is not None and killed[0] >= 1  # the API's pooled connection
        r = await http.get("/v1/workflows")
        assert (r.status_code, r.json()["error"]) == (503, "visibility_unavailable"), r.text
        assert r.headers["Retry-After"] == "5"
        deadline = time.monotonic() + 20
        while (r := await http.get("/v1/workflows")).status_code != 200:  # the pool reconnects
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.2)
        assert r.json() == {"workflows": [], "next": None}
