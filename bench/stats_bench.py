"""How long the windowed statistics take to compute (``GET /v1/stats?minutes=N``).

    .venv/bin/python bench/stats_bench.py --runs 200000 --minutes 60

Starts PostgreSQL (or uses ``DATABASE_URL``), fills a runs table with ``--runs``
closed runs of 4 workflow types spread over the last ``--minutes`` minutes, 95%
COMPLETED and 5% FAILED, start-to-close 50 ms to 5 s, then times
``VisibilityStore.minute_stats`` over those minutes (median of ``--repeat``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg

from orchestrator.devstack import providers
from orchestrator.visibility.schema import apply_schema
from orchestrator.visibility.store import VisibilityStore

TABLE = "stats_bench_runs"


def fill(dsn: str, runs: int, minutes: int) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        apply_schema(conn, TABLE)
        with conn.cursor().copy(
            f"COPY {TABLE} (workflow_id, run_id, workflow_type, task_queue, status, "
            "start_time, close_time, history_length, shard) FROM STDIN"
        ) as copy:
            for n in range(runs):
                close = now - timedelta(seconds=rng.uniform(0, minutes * 60))
                start = close - timedelta(milliseconds=rng.uniform(50, 5000))
                status = "FAILED" if rng.random() < 0.05 else "COMPLETED"
                copy.write_row(
                    (f"wf-{n}", "r", f"type-{n % 4}", "q", status, start, close, 9, n % 8)
                )
        conn.execute(f"ANALYZE {TABLE}")


async def measure(dsn: str, minutes: int, repeat: int) -> tuple[list[float], int]:
    until = datetime.now(UTC) + timedelta(minutes=1)
    times: list[float] = []
    rows = 0
    async with VisibilityStore(dsn, table=TABLE) as store:
        for _ in range(repeat):
            began = time.perf_counter()
            found = await store.minute_stats(until - timedelta(minutes=minutes + 1), until)
            times.append((time.perf_counter() - began) * 1000)
            rows = len(found)
    return times, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"uptime before: {os.getloadavg()}")

    def run(dsn: str) -> None:
        began = time.perf_counter()
        fill(dsn, args.runs, args.minutes)
        print(f"filled {args.runs} closed runs in {time.perf_counter() - began:.1f}s")
        times, rows = asyncio.run(measure(dsn, args.minutes, args.repeat))
        each = ", ".join(f"{t:.0f}" for t in times)
        print(
            f"minute_stats over {args.minutes} min: {rows} type-minutes, "
            f"median {statistics.median(times):.0f} ms (runs: {each})"
        )

    if os.environ.get("DATABASE_URL"):
        run(os.environ["DATABASE_URL"])
    else:
        with providers.postgres() as pg:
            run(pg.dsn)
    print(f"load after: {os.getloadavg()}")
    print(f"command: bench/stats_bench.py --runs {args.runs} --minutes {args.minutes}")


if __name__ == "__main__":
    main()
