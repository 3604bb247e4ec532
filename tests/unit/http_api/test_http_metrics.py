"""``GET /metrics`` of ``saga http``: behind a token like every route, and it counts
requests by route pattern, never by the ids in the path. No broker runs."""

from __future__ import annotations

import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.http_helpers import READ_TOKEN, bearer, running_api


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_metrics_need_a_token_and_count_requests_by_route() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "nokafka", database_url=None, healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        assert (await http.get("/metrics")).status_code == 401
        for wid in ("order-1", "order-2"):
            await http.get(f"/v1/workflows/{wid}", headers=bearer(READ_TOKEN))
        r = await http.get("/metrics", headers=bearer(READ_TOKEN))
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain")
    samples = [
        s for f in text_string_to_metric_families(r.text) for s in f.samples
        if s.name == "saga_http_requests_total"
    ]  # fmt: skip
    by_route = {(s.labels["route"], s.labels["status"]): s.value for s in samples}
    assert by_route[("/v1/workflows/{workflow_id}", "503")] == 2
    assert by_route[("/metrics", "401")] == 1
    assert not any("order-1" in route for route, _ in by_route)
