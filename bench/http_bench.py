"""Request latency of the HTTP API on a real local broker: start and describe.

    .venv/bin/python bench/http_bench.py --requests 200

Starts Kafka (KAFKA_BOOTSTRAP_SERVERS or a local broker from the jars), one
``saga worker`` engine process and one ``saga http`` process, then sends requests
one at a time over a keep-alive connection and prints p50/p99/max per kind:

- start (confirmed): ``POST /v1/workflows``, waiting for the shard's START reply
  (produce, engine transaction, reply read back): what a caller gets by default;
- start (wait=0): returns once Kafka acknowledged the command;
- describe: ``GET /v1/workflows/{id}``, answered by the shard that owns the workflow
  from its store (one engine transaction; before December 2026 it scanned the partition);
- result: ``GET /v1/workflows/{id}/result`` of a closed run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from orchestrator.devstack import providers
from orchestrator.log.topics import TopicLayout, ensure_topics

ROOT = Path(__file__).resolve().parents[1]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "--log-level", "WARNING", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("saga http did not become healthy")


def timed(n: int, call: Callable[[int], httpx.Response], expect: int) -> list[float]:
    """Milliseconds of ``n`` sequential calls; each must answer ``expect``."""
    out = []
    for i in range(n):
        began = time.perf_counter()
        r = call(i)
        out.append((time.perf_counter() - began) * 1000)
        if r.status_code != expect:
            raise RuntimeError(f"request {i}: {r.status_code} {r.text}")
    return out


def history_records(bootstrap: str, layout: TopicLayout) -> int:
    """Records (and transaction markers) in the history topic: the sum of end offsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "http-bench"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(layout.history, p), timeout=10)[1]
            for p in range(layout.shards)
        )
    finally:
        consumer.close()


def report(name: str, ms: list[float]) -> None:
    q = statistics.quantiles(ms, n=100)
    print(
        f"{name:<22} n={len(ms)}  p50 {q[49]:6.1f} ms  p99 {q[98]:6.1f} ms  max {max(ms):6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument(
        "--preload",
        type=int,
        default=0,
        help="workflows started (wait=0) before timing, to grow the history partitions",
    )
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="saga-http-bench-"))
    token = secrets.token_urlsafe(32)
    with providers.kafka() as kafka:
        prefix = f"hb{uuid.uuid4().hex[:6]}"
        layout = TopicLayout(prefix=prefix, shards=args.shards)
        ensure_topics(AdminClient({"bootstrap.servers": kafka.bootstrap_servers}), layout)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SAGA_TOPIC_PREFIX": prefix,
            "SAGA_SHARDS": str(args.shards),
            "SAGA_HTTP_TOKENS": token,
            "DATABASE_URL": "",
        }
        port = free_port()
        procs = [
            spawn(["worker", "--sagas", "bench.bench_sagas"], env, logs / "engine.log"),
            spawn(["http", "--port", str(port)], env, logs / "http.log"),
        ]
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:

                def start(kind: str, wait: float | None = None) -> Callable[[int], httpx.Response]:
                    def call(i: int) -> httpx.Response:
                        body = {"workflow": "bench.noop", "id": f"{kind}-{i}", "task_queue": "q"}
                        body |= {"input": i} if wait is None else {"input": i, "wait": wait}
                        return http.post("/v1/workflows", json=body)

                    return call

                timed(args.warmup, start("warm"), 201)  # the broker's JIT warms up too
                timed(args.preload, start("pre", 0), 202)
                confirmed = timed(args.requests, start("s"), 201)
                unconfirmed = timed(args.requests, start("u", 0), 202)
                described = timed(args.requests, lambda i: http.get(f"/v1/workflows/s-{i}"), 200)
                results = timed(
                    args.requests, lambda i: http.get(f"/v1/workflows/s-{i}/result"), 200
                )
            records = history_records(kafka.bootstrap_servers, layout)
            print(
                f"{args.warmup + args.preload + 2 * args.requests} workflows over {args.shards} "
                f"shards, {records // args.shards} history records per partition on average "
                "by the end; sequential requests, one keep-alive connection"
            )
            report("start (confirmed)", confirmed)
            report("start (wait=0)", unconfirmed)
            report("describe", described)
            report("result (closed run)", results)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
