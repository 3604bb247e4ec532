"""Sagas/s and start-to-complete latency on a real local broker; then restore time.

    .venv/bin/python bench/engine_bench.py --sagas 5000 --workflow bench.noop
    .venv/bin/python bench/engine_bench.py --sagas 2000 --rate 250

Starts Kafka (KAFKA_BOOTSTRAP_SERVERS or a local broker from the jars), runs
``saga worker`` processes, publishes start commands (as fast as possible or at
``--rate``/s), and times each saga from the produce call to the RESULT reply seen
by a read_committed consumer. Then it starts one fresh worker and times the
restore of every shard (which now holds all those closed executions).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Collection
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from orchestrator.converter import DataConverter
from orchestrator.devstack import providers
from orchestrator.log.consuming import consume_available
from orchestrator.log.partitioner import shard_for
from orchestrator.log.producing import PROMPT_PRODUCER
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard.replies import result_correlation_id

WIRE, CONV = WireFormat(), DataConverter()
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the bench package importable
    sys.path.insert(0, str(ROOT))

from bench.hop_trace import hop_breakdown, print_breakdown  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Scraper(threading.Thread):
    """GETs each worker's /metrics every few seconds, as Prometheus would (--metrics)."""

    def __init__(self, ports: list[int], every_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.urls = [f"http://127.0.0.1:{p}/metrics" for p in ports]
        self.every_s = every_s
        self.stop = threading.Event()
        self.scrapes = 0
        self.bytes = 0

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            for url in self.urls:
                try:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        self.bytes += len(answer.read())
                    self.scrapes += 1
                except OSError:
                    pass  # not up yet


#: how workers are started: ``python -m <module> ...`` (bench.traced: with a tracing SDK)
LAUNCHER = ["orchestrator.cli"]


def spawn(
    bootstrap: str, prefix: str, shards: int, name: str, logs: Path, extra: list[str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SAGA_TOPIC_PREFIX": prefix,
        "SAGA_SHARDS": str(shards),
    }
    with (logs / f"{name}.log").open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                *LAUNCHER,
                "--log-level",
                "INFO",
                "worker",
                "--sagas",
                "bench.bench_sagas",
                "--worker-id",
                f"{prefix}-{name}",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_log(path: Path, pattern: str, count: int, timeout_s: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if path.exists() and len(re.findall(pattern, path.read_text())) >= count:
            return time.monotonic() - began
        time.sleep(0.05)
    raise TimeoutError(f"{path}: {pattern!r} x{count} not seen")


_RESULT_KEY = result_correlation_id("").encode()


class ReplyWatcher(threading.Thread):
    """Records when each workflow's first reply of ``kind`` (default: RESULT) was seen."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        kind: rec.ReplyKind = rec.ReplyKind.RESULT,
        counted: Collection[str] = (),
    ) -> None:
        """``counted``: workflow ids whose replies :attr:`counted` counts as they come,
        so a bench waiting for many need not scan them all at each poll."""
        super().__init__(daemon=True)
        self.kind = kind
        self._counted = set(counted)
        self.counted = 0
        self.done: dict[str, float] = {}
        self.done_wall_ms: dict[str, float] = {}
        self.stop = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
            }
        )
        self.consumer.subscribe([topic])

    def run(self) -> None:
        results = self.kind is rec.ReplyKind.RESULT
        while not self.stop.is_set():
            for msg in consume_available(self.consumer, 1000, 0.05):
                if msg.error() is not None:
                    continue
                if results:
                    # A RESULT reply's key is its correlation id, result/<workflow id>
                    # (orchestrator/worker/shard/replies.py), and no other reply's is:
                    # reading the key spares the observer an Avro decode per reply,
                    # which took a quarter of a core in a 100,000-timer storm
                    key = msg.key() or b""
                    if not key.startswith(_RESULT_KEY):
                        continue
                    workflow_id = key[len(_RESULT_KEY) :].decode()
                else:
                    reply = WIRE.decode_reply(msg.headers(), msg.value()).record
                    if reply.kind is not self.kind:
                        continue
                    workflow_id = reply.workflow_id
                if workflow_id not in self.done:
                    self.done[workflow_id] = time.monotonic()
                    self.done_wall_ms[workflow_id] = time.time() * 1000
                    if workflow_id in self._counted:
                        self.counted += 1
        self.consumer.close()


def send_starts(
    producer: Producer,
    layout: TopicLayout,
    ids: list[str],
    rate: float,
    workflow: str,
    sent: dict[str, float],
    sent_wall_ms: dict[str, float],
) -> None:
    """Publish one start command per id, at ``rate``/s (0: as fast as possible)."""
    began = time.monotonic()
    for n, wf_id in enumerate(ids):
        if rate:
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        enc = WIRE.encode_command(
            rec.StartWorkflow(
                workflow_id=wf_id,
                workflow_type=workflow,
                task_queue="bench",
                input=[CONV.to_payload(n)],
            )
        )
        producer.produce(
            layout.commands,
            key=enc.key,
            value=enc.value,
            headers=list(enc.headers),
            partition=shard_for(wf_id, layout.shards),
        )
        sent[wf_id] = time.monotonic()
        sent_wall_ms[wf_id] = time.time() * 1000
        producer.poll(0)
    producer.flush(30)


def wait_done(watcher: ReplyWatcher, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(k not in watcher.done for k in ids) and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0, help="starts/s (0: as fast as possible)")
    parser.add_argument("--workers", type=int, default=1, help="engine worker processes")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        help="extra `saga worker` option for the engine workers (repeatable), e.g. "
        "--engine-arg=--no-early-dispatch",
    )
    parser.add_argument("--workflow", default="bench.noop")
    parser.add_argument(
        "--task-queue-workers",
        type=int,
        default=0,
        help="activity worker processes (for bench.three_step)",
    )
    parser.add_argument(
        "--colocated",
        action="store_true",
        help="the engine workers also serve the bench queue (`saga worker --task-queue "
        "bench`): tasks of activities with a start-to-close timeout (bench.three_step_timed) "
        "are handed over in process (orchestrator/worker/task_handoff.py)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1000,
        help="untimed sagas run first, at the same rate (at least; see --warmup-s)",
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=45.0,
        help="warm up for at least this long (0: just --warmup sagas)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="workers export Prometheus metrics (--metrics-port), scraped every 5 s",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="after the run, split start->complete into hops (bench/hop_trace.py)",
    )
    parser.add_argument(
        "--tracing",
        choices=("off", "api", "sdk"),
        default="api",
        help="api: the OpenTelemetry API only, as shipped (no span recorded); sdk: workers "
        "run with the SDK, every span recorded, batched and dropped (bench/traced.py); "
        "off: tracing taken out of the workers (bench/untraced.py), the baseline",
    )
    args = parser.parse_args()
    if args.tracing == "sdk":
        LAUNCHER[:] = ["bench.traced"]
    elif args.tracing == "off":
        LAUNCHER[:] = ["bench.untraced"]

    logs = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    with providers.kafka() as kafka:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        layout = TopicLayout(prefix=prefix, shards=args.shards)
        ensure_topics(
            AdminClient({"bootstrap.servers": kafka.bootstrap_servers}), layout, ["bench"]
        )
        ports = [free_port() for _ in range(args.workers + args.task_queue_workers)]

        def metrics_flags(i: int) -> list[str]:
            return ["--metrics-port", str(ports[i])] if args.metrics else []

        procs = [
            spawn(
                kafka.bootstrap_servers,
                prefix,
                args.shards,
                f"engine-{i}",
                logs,
                [
                    *metrics_flags(i),
                    *(["--task-queue", "bench"] if args.colocated else []),
                    *args.engine_arg,
                ],
            )
            for i in range(args.workers)
        ]
        procs += [
            spawn(
                kafka.bootstrap_servers,
                prefix,
                args.shards,
                f"activities-{i}",
                logs,
                ["--no-engine", "--task-queue", "bench", *metrics_flags(args.workers + i)],
            )
            for i in range(args.task_queue_workers)
        ]
        scraper = Scraper(ports) if args.metrics else None
        if scraper is not None:
            scraper.start()
        try:
            for i in range(args.workers):
                wait_log(logs / f"engine-{i}.log", r"restored shard", 1, 60)
            time.sleep(2)  # let the group settle
            watcher = ReplyWatcher(kafka.bootstrap_servers, layout.replies)
            watcher.start()
            time.sleep(1)
            # the settings of the project's client (orchestrator/log/producing.py)
            producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, **PROMPT_PRODUCER})
            # (a max-rate run warms up with as many sagas as ~400/s would send meanwhile)
            warmup = max(args.warmup, int((args.rate or 400) * args.warmup_s))
            if warmup:
                # untimed, like the peers' warm-up: the broker's JIT compiles its hot paths.
                # Its C2 compiler took half a core for the first ~40 s under 250 sagas/s
                # (top -H), so a warm-up by count alone left it compiling while we measured.
                warm = [f"w-{n}" for n in range(warmup)]
                send_starts(producer, layout, warm, args.rate, args.workflow, {}, {})
                wait_done(watcher, warm, 300)
                time.sleep(1)
            sent: dict[str, float] = {}
            sent_wall_ms: dict[str, float] = {}
            timed = [f"b-{n}" for n in range(args.sagas)]
            began = time.monotonic()
            send_starts(producer, layout, timed, args.rate, args.workflow, sent, sent_wall_ms)
            wait_done(watcher, timed, 300)
            watcher.stop.set()
            finished = {k: watcher.done[k] for k in timed if k in watcher.done}
            latencies = sorted((finished[k] - sent[k]) * 1000 for k in finished if k in sent)
            elapsed = max(finished.values()) - began
            q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
            print(
                f"workflow={args.workflow} sagas={args.sagas} completed={len(finished)} "
                f"engine_workers={args.workers} shards={args.shards} rate={args.rate or 'max'} "
                f"engine_args={args.engine_arg} colocated={args.colocated} "
                f"tracing={args.tracing}"
            )
            print(f"throughput: {len(finished) / elapsed:.0f} sagas/s over {elapsed:.1f}s")
            if scraper is not None:
                print(f"metrics: {scraper.scrapes} scrapes, {scraper.bytes} bytes")
            print(
                f"latency start->complete: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, "
                f"max {latencies[-1]:.0f} ms"
            )
            if args.breakdown:
                print("hops (from record create times):")
                print_breakdown(
                    hop_breakdown(
                        kafka.bootstrap_servers,
                        (layout.commands, layout.history, layout.task_queue("bench")),
                        args.shards,
                        sent_wall_ms,
                        dict(watcher.done_wall_ms),
                    )
                )
            cpu = [process_cpu_s(p.pid) for p in procs]
            total = args.sagas + warmup
            engine_ms = sum(cpu[: args.workers]) * 1000 / total
            activity_ms = sum(cpu[args.workers :]) * 1000 / total
            print(
                f"cpu per saga (process CPU over warm-up and run, {total} sagas): "
                f"engine {engine_ms:.2f} ms, activity workers {activity_ms:.2f} ms"
            )
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
        fresh = spawn(kafka.bootstrap_servers, prefix, args.shards, "restore", logs, [])
        try:
            seconds = wait_log(logs / "restore.log", r"restored shard \d+", args.shards, 300)
            text = (logs / "restore.log").read_text()
            records = sum(int(m) for m in re.findall(r"restored shard \d+: (\d+) records", text))
            print(
                f"restore: {records} history records "
                f"({args.sagas + warmup} closed executions) "
                f"on {args.shards} shards in {seconds:.2f}s from process start"
            )
        finally:
            fresh.terminate()
            fresh.wait(60)
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
