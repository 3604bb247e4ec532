"""The server starts without Kafka or PostgreSQL and says so (503), then recovers
nothing it cannot reach; authentication and validation still apply. No broker runs:
the bootstrap address is a closed loopback port."""

from __future__ import annotations

import socket

import httpx

from tests.integration.http_helpers import ADMIN_TOKEN, bearer, running_api


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


async def test_without_kafka_health_is_503_and_routes_say_why() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "nokafka", database_url=None, healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        r = await http.get("/healthz")
        assert r.status_code == 503
        assert r.json() == {"status": "starting", "kafka": "connecting", "visibility": "disabled"}

        body = {"workflow": "e2e.nap", "id": "n-1", "task_queue": "q"}
        assert (await http.post("/v1/workflows", json=body)).status_code == 401
        r = await http.post("/v1/workflows", json=body, headers=bearer(ADMIN_TOKEN))
        assert (r.status_code, r.json()["error"]) == (503, "unavailable"), r.text
        assert r.headers["Retry-After"] == "2"
        assert "not connected to Kafka" in r.json()["message"]
        r = await http.post("/v1/workflows", json={"id": "n-1"}, headers=bearer(ADMIN_TOKEN))
        assert r.status_code == 400  # a bad request is bad whatever the broker does


async def test_insecure_mode_needs_no_token() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "nokafka", tokens=None, healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        r = await http.get("/v1/stats")
        assert (r.status_code, r.json()["error"]) == (503, "visibility_disabled")
        r = await http.get("/v1/workflows/x-1")
        assert (r.status_code, r.json()["error"]) == (503, "unavailable")


async def test_an_unreachable_database_is_503_for_lists_only() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    dsn = f"postgresql://saga:saga@127.0.0.1:{closed_port()}/saga?connect_timeout=1"
    async with (
        running_api(config, "nodb", database_url=dsn, healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(ADMIN_TOKEN)) as http,
    ):
        assert (await http.get("/healthz")).json()["visibility"] == "unavailable"
        for path in ("/v1/workflows", "/v1/stats"):
            r = await http.get(path)
            assert (r.status_code, r.json()["error"]) == (503, "visibility_unavailable"), r.text
            assert r.headers["Retry-After"] == "5"
            assert "saga" not in r.json()["message"]  # no DSN (user, password) in answers
