"""Peer benchmark: a 3-step no-op DBOS workflow on a local PostgreSQL.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/peers/dbos_bench.py --workflows 3000               # max rate
    .venv/bin/python bench/peers/dbos_bench.py --workflows 1500 --rate 50     # latency
    .venv/bin/python bench/peers/dbos_bench.py --workflows 1500 --rate 50 --fsync

PostgreSQL comes the project's way (``orchestrator.devstack.providers.postgres()``:
``DATABASE_URL`` if set, else a throwaway local server on 127.0.0.1). The local
server runs with ``fsync=off, full_page_writes=off`` (the project's test setting);
``--fsync`` starts it with PostgreSQL's defaults instead (fsync on), which is what
DBOS's durability is meant to rest on.

DBOS is configured in code (``DBOSConfig``; no ``dbos-config.yaml``) with only a
name and ``system_database_url`` (a fresh database on that server, created by DBOS);
every durability setting stays at its default: each step's output and the
workflow's status are committed to PostgreSQL before the workflow moves on.

Measured: a workflow of three ``@DBOS.step`` no-ops, run in this process (DBOS is a
library: the workflow executes in the process that starts it, on DBOS's thread
pool). Latency is from just before ``DBOS.start_workflow`` (which itself commits the
workflow's PENDING row) to the moment the workflow's future resolves (after its
SUCCESS row is committed).

- max rate (no ``--rate``): ``--concurrency`` client threads each start a workflow
  and wait for it, in a loop (closed loop), until ``--workflows`` have completed.
- ``--rate R``: one thread starts workflows on a fixed schedule of R/s (open loop).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from orchestrator.devstack import postgres_local, providers

DBOS_DB = "dbos_bench_sys"


def step_noop(n: int) -> int:
    return n + 1


def build_workflow() -> Any:
    """Register the steps and the workflow with DBOS (before launch)."""
    from dbos import DBOS

    step = DBOS.step(name="bench_step")(step_noop)

    @DBOS.workflow(name="bench_three_step")
    def three_step(n: int) -> int:
        for _ in range(3):
            n = step(n)
        return n

    return three_step


@contextlib.contextmanager
def postgres(fsync: bool) -> Iterator[str]:
    """A DSN from the project's provider; with ``fsync`` the local server keeps its defaults."""
    if not fsync or os.environ.get("DATABASE_URL"):
        with providers.postgres() as handle:
            yield handle.dsn
        return
    original = postgres_local.spawn

    def spawn_with_defaults(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        dropped = {"fsync=off", "full_page_writes=off"}
        kept: list[str] = []
        for arg in argv:
            if arg in dropped and kept and kept[-1] == "-c":
                kept.pop()
                continue
            kept.append(arg)
        return original(kept, *args, **kwargs)

    postgres_local.spawn = spawn_with_defaults  # type: ignore[assignment]
    try:
        with postgres_local.LocalPostgres() as server:
            yield server.dsn
    finally:
        postgres_local.spawn = original


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


def run_closed_loop(dbos: Any, workflow: Any, total: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            began = time.monotonic()
            dbos.start_workflow(workflow, n).get_result()
            with lock:
                latencies.append((time.monotonic() - began) * 1000)

    with ThreadPoolExecutor(concurrency) as pool:
        for fut in [pool.submit(client) for _ in range(concurrency)]:
            fut.result()
    return latencies


def run_open_loop(dbos: Any, workflow: Any, total: int, rate: float) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    everything_done = threading.Event()

    def on_done(began: float) -> Any:
        def record(_: Future[Any]) -> None:
            with lock:
                latencies.append((time.monotonic() - began) * 1000)
                if len(latencies) == total:
                    everything_done.set()

        return record

    start = time.monotonic()
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        began = time.monotonic()
        handle = dbos.start_workflow(workflow, n)
        handle.future.add_done_callback(on_done(began))
    if not everything_done.wait(300):
        raise TimeoutError(f"only {len(latencies)} of {total} workflows completed in 300 s")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workflows", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=0, help="starts/s (0: max, closed loop)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads at max rate")
    parser.add_argument("--warmup", type=int, default=100, help="workflows run first, not timed")
    parser.add_argument("--fsync", action="store_true", help="local PostgreSQL with fsync on")
    args = parser.parse_args()

    from dbos import DBOS, DBOSConfig

    with postgres(args.fsync) as dsn:
        base, _, _ = dsn.rpartition("/")
        config: DBOSConfig = {
            "name": "saga-peer-bench",
            "system_database_url": f"{base}/{DBOS_DB}",
            "run_admin_server": False,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        workflow = build_workflow()
        DBOS.launch()
        try:
            run_closed_loop(DBOS, workflow, args.warmup, min(args.concurrency, 8))
            began = time.monotonic()
            if args.rate:
                latencies = run_open_loop(DBOS, workflow, args.workflows, args.rate)
            else:
                latencies = run_closed_loop(DBOS, workflow, args.workflows, args.concurrency)
            elapsed = time.monotonic() - began
        finally:
            DBOS.destroy(workflow_completion_timeout_sec=10)
        latencies.sort()
        mode = f"rate={args.rate:g}/s" if args.rate else f"max (closed loop, {args.concurrency})"
        print(
            f"dbos {importlib.metadata.version('dbos')} "
            f"workflow=3 no-op steps workflows={len(latencies)} {mode} "
            f"postgres fsync={'on' if args.fsync else 'off (project test setting)'}"
        )
        print(f"throughput: {len(latencies) / elapsed:.0f} workflows/s over {elapsed:.1f}s")
        print(
            f"latency start->complete: p50 {pct(latencies, 50):.1f} ms, "
            f"p99 {pct(latencies, 99):.1f} ms, max {latencies[-1]:.1f} ms"
        )


if __name__ == "__main__":
    main()
