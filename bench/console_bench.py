"""What the console's list page costs with many runs in visibility.

    .venv/bin/python bench/console_bench.py --runs 100000 --requests 200

Fills a fresh visibility table in PostgreSQL (``DATABASE_URL`` or a local server) with
``--runs`` rows (statuses, types, search attributes, start times over 30 days, a few
parked runs), serves the HTTP API in this process (no Kafka needed: list and stats
read only PostgreSQL), and times each request the console's runs page makes, over
HTTP with a token, sequentially on one keep-alive connection: p50, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from aiohttp import web

from orchestrator.devstack import providers
from orchestrator.devstack.processes import free_port
from orchestrator.http import ApiOptions, Tokens, build_app
from orchestrator.visibility.schema import apply_schema

TOKEN = "bench-token-0123456789abcdef"
NOW = datetime(2026, 12, 1, tzinfo=UTC)

FILL = """
INSERT INTO {table} (workflow_id, run_id, workflow_type, task_queue, status, start_time,
                     close_time, current_step, history_length, search_attributes, memo,
                     error, parked, shard)
SELECT 'wf-' || i, 'run-' || i,
       (ARRAY['payments.transfer', 'orders.checkout', 'kyc.review', 'refunds.issue'])[1 + i %% 4],
       'q',
       CASE WHEN i %% 100 < 70 THEN 'COMPLETED' WHEN i %% 100 < 85 THEN 'RUNNING'
            WHEN i %% 100 < 93 THEN 'FAILED' WHEN i %% 100 < 97 THEN 'CANCELLED'
            WHEN i %% 100 < 99 THEN 'COMPENSATING' ELSE 'COMPENSATION_FAILED' END,
       %(now)s - (i * interval '1 second') * (2592000.0 / %(n)s),
       NULL, 'step', 7,
       jsonb_build_object('customer', 'c' || (i %% 500), 'priority', i %% 5),
       '{{}}'::jsonb, NULL,
       CASE WHEN i %% 5000 = 0 THEN 'non-determinism at event 4' END,
       i %% 8
FROM generate_series(1, %(n)s) AS i
"""


def fill(dsn: str, table: str, runs: int) -> float:
    began = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        apply_schema(conn, table)
        conn.execute(FILL.format(table=table), {"now": NOW, "n": runs})
        conn.execute(f"ANALYZE {table}")
    return time.perf_counter() - began


def page_queries() -> dict[str, str]:
    day_start = (NOW - timedelta(days=3)).isoformat()
    day_end = (NOW - timedelta(days=2)).isoformat()
    return {
        "first page (25)": "/v1/workflows?limit=25",
        "status=failed": "/v1/workflows?limit=25&status=FAILED",
        "status=compensation_failed": "/v1/workflows?limit=25&status=COMPENSATION_FAILED",
        "type": "/v1/workflows?limit=25&type=kyc.review",
        "search customer": "/v1/workflows?limit=25&search=customer:c7",
        "search + status": "/v1/workflows?limit=25&search=customer:c7&status=RUNNING",
        "one day of starts": f"/v1/workflows?limit=25&started_after={day_start}"
        f"&started_before={day_end}".replace("+", "%2B"),
        "parked only": "/v1/workflows?limit=25&parked=true",
        "counts by status": "/v1/stats",
    }


async def measure(base: str, requests: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        first = await http.get("/v1/workflows?limit=25")
        cursor = first.json()["next"]
        queries = {
            **page_queries(),
            "second page (cursor)": f"/v1/workflows?limit=25&after={cursor}",
        }
        for name, path in queries.items():
            assert (await http.get(path)).status_code == 200, path  # warm, and check
            samples = []
            for _ in range(requests):
                began = time.perf_counter()
                r = await http.get(path)
                samples.append((time.perf_counter() - began) * 1000)
                r.raise_for_status()
            timings[name] = samples
    return timings


async def serve_and_measure(dsn: str, table: str, requests: int) -> dict[str, list[float]]:
    options = ApiOptions(
        kafka_config={"bootstrap.servers": f"127.0.0.1:{free_port()}"},  # unused by lists
        database_url=dsn,
        tokens=Tokens.of([TOKEN]),
        visibility_table=table,
    )
    runner = web.AppRunner(build_app(options), shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(600):  # the store opens in the background
                if (await http.get("/healthz")).json()["visibility"] == "ok":
                    break
                await asyncio.sleep(0.1)
        return await measure(base, requests)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    table = f"bench_{uuid.uuid4().hex[:8]}"
    with providers.postgres() as pg:
        filled = fill(pg.dsn, table, args.runs)
        print(f"{args.runs} runs in {table}, filled in {filled:.1f} s")
        try:
            timings = asyncio.run(serve_and_measure(pg.dsn, table, args.requests))
        finally:
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_offsets")
    print(f"{'request':32} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, samples in timings.items():
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"{name:32} {statistics.median(ordered):8.1f} {p99:8.1f} {ordered[-1]:8.1f}")


if __name__ == "__main__":
    main()
