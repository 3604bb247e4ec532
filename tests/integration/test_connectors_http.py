"""The HTTP connector against a real server on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from orchestrator import activity
from orchestrator.activity import ActivityInfo
from orchestrator.connectors.http import HttpConnector
from orchestrator.exceptions import ApplicationError

pytestmark = pytest.mark.integration


async def _status(request: web.Request) -> web.Response:
    headers = {}
    if "retry_after" in request.query:
        headers["Retry-After"] = request.query["retry_after"]
    return web.Response(
        status=int(request.match_info["code"]), text=request.query.get("body", ""),
        headers=headers,
    )


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {"headers": dict(request.headers), "body": await request.text()},
        status=int(request.query.get("status", "200")),
    )


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query["seconds"]))
    return web.Response(text="late")


async def _hangup(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    return web.Response(text="never seen")


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/hangup", _hangup)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
        sock.close()


def _info(seq: int = 3, attempt: int = 1) -> ActivityInfo:
    now = datetime.now(UTC)
    return ActivityInfo(
        workflow_id="wf-1", run_id="run-1", workflow_type="transfer", activity_type="withdraw",
        activity_seq=seq, attempt=attempt, task_queue="q", scheduled_time=now,
        attempt_started_time=now,
    )


async def _raises(coro: object) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        await coro  # type: ignore[misc]
    return info.value


async def test_inside_an_activity_the_idempotency_key_is_sent(server: str) -> None:
    async with HttpConnector(server) as http:
        with activity.running(_info(seq=7, attempt=2), lambda _: None):
            r = await http.post("/echo", json={"amount": 5})
        assert r.json()["headers"]["Idempotency-Key"] == "wf-1/run-1/7"
        r = await http.post("/echo", idempotency_key="explicit")
        assert r.json()["headers"]["Idempotency-Key"] == "explicit"
        r = await http.get("/echo")  # outside an activity, no key unless given
        assert "Idempotency-Key" not in r.json()["headers"]


@pytest.mark.parametrize(
    ("code", "retryable", "kind"),
    [
        (500, True, "HttpServerError"),
        (502, True, "HttpServerError"),
        (504, True, "HttpServerError"),
        (429, True, "HttpTooManyRequests"),
        (503, True, "HttpServiceUnavailable"),
        (400, False, "HttpClientError"),
        (404, False, "HttpClientError"),
        (409, False, "HttpClientError"),
        (422, False, "HttpClientError"),
    ],
)
async def test_statuses_are_classified(
    server: str, code: int, retryable: bool, kind: str
) -> None:
    async with HttpConnector(server) as http:
        err = await _raises(http.post(f"/status/{code}?body=why-not"))
    assert (err.retryable, err.type) == (retryable, kind)
    assert f"-> {code}" in err.message
    assert "why-not" in err.message


async def test_retry_after_seconds_and_date_forms(server: str) -> None:
    when = (datetime.now(UTC) + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    async with HttpConnector(server) as http:
        err = await _raises(http.get("/status/429?retry_after=7"))
        assert err.next_retry_delay == timedelta(seconds=7)
        err = await _raises(http.get("/status/503", params={"retry_after": when}))
        assert err.next_retry_delay is not None
        assert timedelta(seconds=80) < err.next_retry_delay <= timedelta(seconds=90)


async def test_per_call_timeout_is_retryable(server: str) -> None:
    async with HttpConnector(server, timeout=5.0) as http:
        started = asyncio.get_running_loop().time()
        err = await _raises(http.get("/slow?seconds=3", timeout=0.3))
        assert asyncio.get_running_loop().time() - started < 2
    assert (err.type, err.retryable) == ("HttpTimeout", True)
    assert "ReadTimeout" in err.message


async def test_connection_refused_and_dropped_connections_are_retryable(server: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with HttpConnector(f"http://127.0.0.1:{port}") as http:
        err = await _raises(http.get("/"))
    assert (err.type, err.retryable) == ("HttpConnectionError", True)
    async with HttpConnector(server) as http:
        err = await _raises(http.get("/hangup"))
    assert err.retryable
    assert err.type == "HttpProtocolError"


async def test_bad_urls_are_terminal() -> None:
    async with HttpConnector() as http:
        err = await _raises(http.get("ftp://127.0.0.1/x"))
    assert not err.retryable


async def test_authorization_never_appears_in_errors(server: str) -> None:
    token = "Bearer sk_live_0123456789abcdef"
    async with HttpConnector(server, headers={"Authorization": token}) as http:
        err = await _raises(http.post("/echo?status=401"))
        assert "sk_live_0123456789abcdef" not in err.message
        assert "[REDACTED]" in err.message
        err = await _raises(
            http.post("/echo?status=400", headers={"X-Api-Key": "k-9876543210"})
        )
        assert "k-9876543210" not in err.message


async def test_raise_for_status_false_returns_the_response(server: str) -> None:
    async with HttpConnector(server) as http:
        r = await http.get("/status/404", raise_for_status=False)
        assert r.status_code == 404
        err = http.error_for(r)
        assert err is not None
        assert not err.retryable
