"""Peer benchmark: a Celery chain of three no-op tasks on Redis.

    .venv/bin/pip install -e '.[bench]'          # and: apt-get install -y redis-server
    .venv/bin/python bench/peers/celery_bench.py --chains 3000               # max rate
    .venv/bin/python bench/peers/celery_bench.py --chains 3000 --rate 100    # latency

Starts Debian's ``redis-server`` as a child on a free 127.0.0.1 port with its
default persistence settings (RDB snapshots, no AOF; data folder is a temporary
directory), and one ``celery worker`` process with the default prefork pool and
``--concurrency 2`` (one per core), both stopped at the end.

Measured: ``chain(step.s(n), step.s(), last.s())`` where ``step`` returns ``n + 1``
and ``last`` pushes the value it got (``n + 2``) onto a Redis list and returns it
plus one. There is no result backend: intermediate values travel in the chain's
messages, and nothing records the chain's state anywhere (a worker crash between
tasks loses or repeats work; Redis as a broker acknowledges in memory). Latency is
from just before ``apply_async`` to the moment this process pops that value from the
list (BLPOP).

- max rate (no ``--rate``): all chains are sent as fast as one thread can.
- ``--rate R``: chains are sent on a fixed schedule of R/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, chain

from orchestrator.devstack.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("CELERY_BENCH_BROKER", "redis://127.0.0.1:6379/0")
DONE_KEY = "celery-bench:done"

app = Celery("celery_bench", broker=BROKER)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)

_clients: dict[str, Any] = {}  # one Redis connection per worker process


@app.task(name="bench.step")
def step(n: int) -> int:
    return n + 1


@app.task(name="bench.last")
def last(n: int) -> int:
    if "done" not in _clients:
        import redis

        _clients["done"] = redis.Redis.from_url(BROKER)
    _clients["done"].rpush(DONE_KEY, n)
    return n + 1


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


def start_redis(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is missing: apt-get install -y redis-server")
    log = (workdir / "redis.log").open("ab")
    return subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def run(total: int, rate: float, client: Any, label: str) -> tuple[list[float], float]:
    sent: dict[int, float] = {}
    done: dict[int, float] = {}

    def collect() -> None:
        deadline = time.monotonic() + 300
        while len(done) < total and time.monotonic() < deadline:
            item = client.blpop(DONE_KEY, timeout=1)
            if item is not None:
                done[int(item[1]) - 2] = time.monotonic()  # last got n + 2

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    began = time.monotonic()
    for n in range(total):
        if rate:
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sent[n] = time.monotonic()
        chain(step.s(n), step.s(), last.s()).apply_async()
    collector.join(310)
    if len(done) < total:
        raise TimeoutError(f"{label}: {len(done)} of {total} chains completed")
    elapsed = max(done.values()) - began
    return sorted((done[n] - sent[n]) * 1000 for n in done), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chains", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=0, help="chains/s (0: as fast as possible)")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork worker processes")
    parser.add_argument("--warmup", type=int, default=100, help="chains run first, not timed")
    args = parser.parse_args()

    import redis

    workdir = Path(tempfile.mkdtemp(prefix="celery-bench-"))
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    server = start_redis(workdir, port)
    worker: subprocess.Popen[bytes] | None = None
    try:
        client = redis.Redis.from_url(broker)
        wait_until(lambda: _pings(client), 20, f"redis on {port}", interval_s=0.1)
        app.conf.broker_url = broker
        env = {**os.environ, "CELERY_BENCH_BROKER": broker}
        with (workdir / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "bench.peers.celery_bench:app",
                    "worker",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(args.concurrency),
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        run(args.warmup, 0, client, "warm-up")
        latencies, elapsed = run(args.chains, args.rate, client, "measured")
        mode = f"rate={args.rate:g}/s" if args.rate else "max"
        print(
            f"celery chain of 3 no-op tasks on redis chains={len(latencies)} {mode} "
            f"worker=prefork concurrency={args.concurrency}"
        )
        print(f"throughput: {len(latencies) / elapsed:.0f} chains/s over {elapsed:.1f}s")
        print(
            f"latency start->complete: p50 {pct(latencies, 50):.1f} ms, "
            f"p99 {pct(latencies, 99):.1f} ms, max {latencies[-1]:.1f} ms"
        )
    finally:
        for proc in (worker, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    main()
