"""Run the HTTP API in the test's event loop on a loopback port, and talk to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiohttp import web

from orchestrator.http import ApiOptions, Tokens, build_app
from orchestrator.operations import OperationsConfig

ADMIN_TOKEN = "admin-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
TOKENS = Tokens.of([ADMIN_TOKEN], [READ_TOKEN])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_healthy(base_url: str, timeout_s: float = 30.0) -> None:
    """Poll /healthz until it answers 200 (the Kafka client is connected)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        while True:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{base_url}/healthz not 200 within {timeout_s} s")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def running_api(
    kafka_config: dict[str, Any],
    prefix: str,
    *,
    database_url: str | None = None,
    tokens: Tokens | None = TOKENS,
    healthy: bool = True,
    operations: OperationsConfig | None = None,
) -> AsyncIterator[str]:
    """Serve the API on 127.0.0.1:<free port>; yields its base URL."""
    options = ApiOptions(
        kafka_config=kafka_config, topic_prefix=prefix, database_url=database_url, tokens=tokens,
        operations=operations or OperationsConfig(),
    )
    runner = web.AppRunner(build_app(options), shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base_url = f"http://127.0.0.1:{port}"
        if healthy:
            await wait_healthy(base_url)
        yield base_url
    finally:
        await runner.cleanup()


@asynccontextmanager
async def api_client(base_url: str, token: str = ADMIN_TOKEN) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for ``base_url`` sending ``token`` (60 s timeout per request)."""
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(token), timeout=60) as http:
        yield http
