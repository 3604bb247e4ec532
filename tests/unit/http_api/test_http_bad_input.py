"""Bad input that the routes must refuse with a clear 400 (never a 500, never a 503
that invites a retry), decided before Kafka or PostgreSQL is asked. No broker and no
database run: a request that passed its checks answers 503, so each 400 below was
decided by the route itself. The cases that need a broker or a database are in
tests/integration/test_http_bad_input.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.http.errors import from_client_error
from orchestrator.http.metrics import http_metrics, metrics_middleware
from orchestrator.serde.errors import RecordEncodeError
from orchestrator.visibility.store import decode_cursor
from tests.integration.http_helpers import ADMIN_TOKEN, READ_TOKEN, bearer, running_api
from tests.unit.http_api.test_http_unavailable import closed_port


def no_kafka() -> dict[str, Any]:
    return {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}


async def test_odd_methods_are_counted_as_other_in_the_metrics() -> None:
    # the metrics middleware runs before authentication, so any caller chooses the method
    async with (
        running_api(no_kafka(), "m", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        for method in ("PROPFIND", "MKCOL", "PURGE", "GET"):
            await http.request(method, "/v1/workflows/w-1")  # 401 or 405: counted anyway
        await http.request("LOCK", "/no/such/route/for-order-9")
        r = await http.get("/metrics", headers=bearer(READ_TOKEN))
    assert r.status_code == 200
    samples = [
        s for f in text_string_to_metric_families(r.text) for s in f.samples
        if s.name == "saga_http_requests_total"
    ]  # fmt: skip
    methods = {s.labels["method"] for s in samples}
    assert methods == {"GET", "other"}, methods
    other = sum(s.value for s in samples if s.labels["method"] == "other")
    assert other == 4
    assert not any("order-9" in s.labels["route"] for s in samples)


@pytest.mark.parametrize("method", ["X-CUSTOM-1", "BREW", "GETX", "PROPFIND"])
async def test_any_method_token_is_counted_as_other(method: str) -> None:
    # aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS) takes any method token
    counted = http_metrics()
    middleware = metrics_middleware(counted)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    await middleware(make_mocked_request(method, "/v1/x"), handler)
    samples = [
        s for f in counted.registry.collect() for s in f.samples
        if s.name == "saga_http_requests_total"
    ]  # fmt: skip
    assert [s.labels["method"] for s in samples] == ["other"]


LIST_AND_STATS: list[tuple[str, Any, str]] = [
    ("/v1/stats", {"minutes": "²"}, "minutes must be a whole number"),
    ("/v1/stats", {"minutes": "1" * 5000}, "minutes must be a whole number"),
    ("/v1/stats", {"minutes": "5", "type": "a\x00b"}, "type must match"),
    ("/v1/workflows", {"build_id": "b\x00"}, "build_id contains a NUL character"),
    ("/v1/workflows", {"search": "x\x00:1"}, "search key contains a NUL character"),
    ("/v1/workflows", {"search": "x:a\x00b"}, "contains a NUL character"),
    ("/v1/workflows", {"search": 'x:{"k": "\\u0000"}'}, "contains a NUL character"),
    ("/v1/workflows", {"search": "x:1e400"}, "has a number out of range"),
    ("/v1/workflows", {"search": "x:[-1e999]"}, "has a number out of range"),
    ("/v1/workflows", {"search": "x:" + "[" * 1500}, "nested too deeply"),
    (
        "/v1/workflows",
        [("search", "customer:acme"), ("search", "customer:globex")],
        "search key 'customer' is given twice",
    ),
]


@pytest.mark.parametrize(("path", "params", "message"), LIST_AND_STATS)
async def test_list_and_stats_refuse_values_the_database_cannot_take(
    path: str, params: Any, message: str
) -> None:
    async with (
        running_api(no_kafka(), "q", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(READ_TOKEN)) as http,
    ):
        r = await http.get(path, params=params)
        assert (r.status_code, r.json()["error"]) == (400, "bad_request"), r.text
        assert message in r.json()["message"], r.text
        valid = await http.get(path)
        assert valid.status_code == 503, "a valid request only lacks the database"


async def test_nan_and_infinity_in_a_search_are_text() -> None:
    # not JSON, so searched for as strings (as the docs say): no 400, no 500
    async with (
        running_api(no_kafka(), "q", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(READ_TOKEN)) as http,
    ):
        for term in ("x:NaN", "x:Infinity", "x:-Infinity"):
            r = await http.get("/v1/workflows", params={"search": term})
            assert (r.status_code, r.json()["error"]) == (503, "visibility_disabled"), r.text


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "forged",
    [
        cursor([10**30, "w", "r"]),
        cursor([-(10**30), "w", "r"]),
        cursor([2**62, "w", "r"]),
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
    ],
)
def test_a_forged_cursor_is_an_invalid_cursor(forged: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(forged)


BATCHES: list[tuple[dict[str, Any], str]] = [
    ({"page_size": 1e400}, "number out of range"),
    ({"rate": -1e400}, "number out of range"),
    ({"page_size": 10**400}, "page_size is out of range"),
    ({"filter": {"workflow_type": "t", "build_id": "b\x00"}}, "filter.build_id contains a NUL"),
    ({"filter": {"search": {"k": "v\x00"}}}, "filter.search contains a NUL"),
    ({"operation": {"op": "reset", "event_seq": 2**63}}, "operation.event_seq must be"),
    ({"filter": {}}, "the filter matches every run"),
    ({"filter": {}, "dry_run": True}, "the filter matches every run"),
    ({"batch_id": "no spaces", "dry_run": True}, "batch id"),
    ({"page_size": 5000, "dry_run": True}, "page size must be between 1 and 1000"),
]


@pytest.mark.parametrize(("change", "message"), BATCHES)
async def test_batch_starts_and_dry_runs_refuse_bad_input(
    change: dict[str, Any], message: str
) -> None:
    body: dict[str, Any] = {
        "operation": {"op": "cancel", "reason": "r"},
        "filter": {"workflow_type": "t"},
        **change,
    }
    content = json.dumps(body).replace("Infinity", "1e400")  # 1e400 as a client sends it
    async with (
        running_api(no_kafka(), "b", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(ADMIN_TOKEN)) as http,
    ):
        r = await http.post("/v1/batches", content=content)
        assert (r.status_code, r.json()["error"]) == (400, "bad_request"), r.text
        assert message in r.json()["message"], r.text


async def test_a_valid_dry_run_gets_past_the_checks() -> None:
    body: dict[str, Any] = {
        "operation": {"op": "cancel", "reason": "r"}, "filter": {}, "dry_run": True,
    }
    async with (
        running_api(no_kafka(), "b", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(ADMIN_TOKEN)) as http,
    ):
        r = await http.post("/v1/batches", json={**body, "allow_all": True})
        assert (r.status_code, r.json()["error"]) == (503, "visibility_disabled"), r.text
        r = await http.post("/v1/batches", json={**body, "filter": {"workflow_type": "t"}})
        assert (r.status_code, r.json()["error"]) == (503, "visibility_disabled"), r.text


DEAD_LETTERS: list[tuple[str, str, Any, str]] = [
    ("GET", "/v1/dead-letters", {"from_offset": "1.5"}, "from_offset must be a whole number"),
    ("GET", "/v1/dead-letters", {"from_offset": "²"}, "from_offset must be a whole number"),
    ("GET", "/v1/dead-letters", {"from_offset": "9" * 5000}, "from_offset must be"),
    ("GET", "/v1/dead-letters", {"from_offset": str(2**63)}, "from_offset must be"),
    ("GET", "/v1/dead-letters", {"limit": "-1"}, "limit must be a whole number"),
    ("POST", "/v1/dead-letters/redrive", {"from_offset": True, "to_offset": 5}, "from_offset"),
    ("POST", "/v1/dead-letters/redrive", {"from_offset": 0, "to_offset": 5.5}, "to_offset"),
    ("POST", "/v1/dead-letters/redrive", {"from_offset": 0, "to_offset": "5"}, "to_offset"),
    ("POST", "/v1/dead-letters/redrive", {"from_offset": 0, "to_offset": 2**63}, "to_offset"),
    ("POST", "/v1/dead-letters/redrive", {"from_offset": 0, "to_offset": 1e400}, "out of range"),
]


@pytest.mark.parametrize(("method", "path", "given", "message"), DEAD_LETTERS)
async def test_dead_letter_offsets_are_whole_64_bit_numbers(
    method: str, path: str, given: Any, message: str
) -> None:
    async with (
        running_api(no_kafka(), "d", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(ADMIN_TOKEN)) as http,
    ):
        if method == "GET":
            r = await http.get(path, params=given)
        else:
            r = await http.post(path, content=json.dumps(given).replace("Infinity", "1e400"))
        assert (r.status_code, r.json()["error"]) == (400, "bad_request"), r.text
        assert message in r.json()["message"], r.text


async def test_activity_pause_routes_take_only_valid_queue_names() -> None:
    async with (
        running_api(no_kafka(), "a", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(ADMIN_TOKEN)) as http,
    ):
        for queue in ("a/b", "with space", "é", "x" * 201, ""):
            for verb in ("pause", "unpause"):
                r = await http.post(
                    f"/v1/activities/{verb}", json={"task_queue": queue, "activity_type": "t"}
                )
                assert r.status_code == 400, (verb, queue, r.text)
                assert "task_queue must match" in r.json()["message"]
            if queue:
                r = await http.get("/v1/activities/paused", params={"task_queue": queue})
                assert r.status_code == 400, (queue, r.text)
                assert "task_queue must match" in r.json()["message"]
        r = await http.get("/v1/activities/paused", params={"task_queue": "pay-ments.v2_x"})
        assert r.status_code == 503, "a valid name: only Kafka is missing"
        r = await http.head("/v1/activities/paused")
        assert r.status_code == 405


def test_a_command_that_does_not_fit_its_record_is_400_or_413() -> None:
    too_large = RecordEncodeError(
        "saga.command.start: value is 2000000 bytes, over the 1048576-byte limit; "
        "store large data outside Kafka"
    )
    mapped = from_client_error(too_large)
    assert mapped is not None and (mapped.status, mapped.code) == (413, "payload_too_large")
    mapped = from_client_error(RecordEncodeError("saga.command.reset: long out of range"))
    assert mapped is not None and (mapped.status, mapped.code) == (400, "bad_request")
