"""Flow control on a real broker: fairness, the rate limit over a minute, priority, and
the latency of the extra hop (docs/benchmarks.md, "Flow control").

    .venv/bin/python bench/flow_bench.py fairness            # A: 10,000 backlog; B: 20/s
    .venv/bin/python bench/flow_bench.py rate                # 50/s, 3 worker processes, 60 s
    .venv/bin/python bench/flow_bench.py priority            # high priority vs a backlog
    .venv/bin/python bench/flow_bench.py hop                 # low load: the dispatcher's cost
    .venv/bin/python bench/flow_bench.py throughput          # the dispatcher's own maximum

Needs KAFKA_BOOTSTRAP_SERVERS. Tasks are written straight to the queue's backlog (or,
for the runs without flow control, to the queue's topic), as the engine writes them;
``flow_nap`` notes when each starts, relative to its send (schedule-to-start).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.flow.configs import read_state
from orchestrator.flow.dispatcher import Dispatcher
from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
from tests.integration import flow_helpers as fh

QUEUE = "bench"


def _kafka() -> dict[str, Any]:
    return {"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"]}


def _layout() -> TopicLayout:
    return TopicLayout(prefix=f"fb{uuid.uuid4().hex[:8]}", shards=4)


def _workers(kafka: dict[str, Any], layout: TopicLayout, n: int, in_flight: int) -> list[Any]:
    workers = [
        ActivityWorker(
            kafka, QUEUE, [fh.flow_nap], layout=layout,
            options=ActivityWorkerOptions(max_in_flight=in_flight, commit_interval_s=0.05),
        ).start()
        for _ in range(n)
    ]  # fmt: skip
    time.sleep(6)  # every member joined: no rebalance inside the measurement
    return workers


def _stop(workers: list[Any]) -> None:
    for w in workers:
        w.stop()
    for w in workers:
        w.join(30)


def _dispatch(kafka: dict[str, Any], layout: TopicLayout) -> tuple[threading.Event, Dispatcher]:
    stop = threading.Event()
    d = Dispatcher(kafka, layout, QUEUE, cycle_s=0.01)
    threading.Thread(target=d.run, args=(stop,), daemon=True).start()
    return stop, d


def _pcts(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"n={len(values)} p50={statistics.median(values) * 1000:.0f} ms "
        f"p99={fh.percentile(values, 99) * 1000:.0f} ms max={max(values) * 1000:.0f} ms"
    )


def fairness(args: argparse.Namespace) -> None:
    """Tenant A: a backlog of ``--backlog``; tenant B: ``--b-rate``/s for ``--seconds``."""
    for fair in (True, False):
        kafka, layout = _kafka(), _layout()
        fh.STARTS.clear()
        producer = Producer({**kafka, "linger.ms": 5})
        stop = None
        if fair:
            fh.configure(kafka, layout, FlowConfig(queue=QUEUE, window=args.window))
        else:
            ensure_topics(AdminClient(kafka), layout, [QUEUE])
        topic = None if fair else layout.task_queue(QUEUE)
        workers = _workers(kafka, layout, args.workers, args.in_flight)
        fh.send_tasks(producer, layout, QUEUE, args.backlog, key="A", ms=args.ms, topic=topic)
        if fair:
            stop, _ = _dispatch(kafka, layout)
        while len(fh.STARTS) < 100:
            time.sleep(0.05)
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < args.seconds:
            fh.send_tasks(producer, layout, QUEUE, 1, key="B", ms=args.ms, topic=topic)
            sent += 1
            time.sleep(max(0.0, start + sent / args.b_rate - time.monotonic()))
        deadline = time.monotonic() + 600
        while sum(1 for k, _, _ in fh.STARTS if k == "B") < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        b = [s for k, _, s in fh.STARTS if k == "B"]
        a_started = sum(1 for k, _, _ in fh.STARTS if k == "A")
        if stop is not None:
            stop.set()
        _stop(workers)
        print(
            f"fairness={'on' if fair else 'off'}: B schedule-to-start {_pcts(b)}; "
            f"A started {a_started}/{args.backlog} when B's last started",
            flush=True,
        )


def rate(args: argparse.Namespace) -> None:
    """``--rate``/s on a queue served by ``--workers`` worker processes for ``--seconds``,
    every worker process killed (SIGKILL) half-way and restarted under its
    ``--worker-id`` (static members: their partitions come back without waiting for
    the session timeout)."""
    kafka, layout = _kafka(), _layout()
    fh.configure(kafka, layout, FlowConfig(queue=QUEUE, rate=args.rate, burst=args.burst,
                                           window=args.window))  # fmt: skip
    producer = Producer({**kafka, "linger.ms": 5})
    total = int(args.rate * args.seconds * 1.3)
    fh.send_tasks(producer, layout, QUEUE, total, ms=args.ms)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    starts_file = logs / f"starts-{layout.prefix}.txt"
    env = {**os.environ, "SAGA_TOPIC_PREFIX": layout.prefix, "SAGA_SHARDS": "4",
           "FLOW_STARTS_FILE": str(starts_file)}  # fmt: skip

    def spawn(i: int) -> subprocess.Popen[bytes]:
        with (logs / f"worker-{i}.log").open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "worker", "--no-engine",
                 "--task-queue", QUEUE, "--sagas", "tests.integration.flow_helpers",
                 "--worker-id", f"{layout.prefix}-w{i}"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    procs = [spawn(i) for i in range(args.workers)]
    with (logs / "dispatcher.log").open("ab") as out:
        dispatcher = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "dispatcher", QUEUE, "--cycle-ms", "10"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    t0 = time.time()
    time.sleep(args.seconds / 2)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(30)
    restarted = time.time()
    procs = [spawn(i) for i in range(args.workers)]
    time.sleep(max(0.0, t0 + args.seconds - time.time()))
    end = time.time()
    dispatcher.send_signal(signal.SIGKILL)
    dispatcher.wait(30)
    released = fh.read_released(kafka, layout.task_queue(QUEUE), 10**9, 10)
    times = [r.time_s for r in released if r.time_s <= end]
    first = times[0]
    steady = [t for t in times if t >= first + args.burst / args.rate]
    minute = (len(steady) - 1) / (steady[-1] - steady[0])
    per_s = collections.Counter(int(t - first) for t in times)
    seconds = sorted(per_s)[1:-1]
    state = read_state(kafka, layout, QUEUE)
    done = _completed(kafka, layout)
    starts = sorted(float(x) for x in starts_file.read_text().split())
    starts = [s for s in starts if s <= end]
    start_rate = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else 0.0
    start_max = fh.max_in_window(starts, 1.0)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    print(
        f"rate {args.rate}/s burst {args.burst}, {args.workers} worker processes, all killed "
        f"and restarted at +{restarted - t0:.1f}s: released {len(times)} in "
        f"{end - first:.1f}s; steady rate {minute:.2f}/s "
        f"({(minute - args.rate) / args.rate * 100:+.2f}%); per-second min "
        f"{min(per_s[s] for s in seconds)} max {max(per_s[s] for s in seconds)}; "
        f"throttled cycles {state.throttled if state else '?'}; outcomes from workers {done}; "
        f"starts at the workers (window {args.window}) {len(starts)}: {start_rate:.2f}/s "
        f"from first to last start, at most {start_max} in any second",
        flush=True,
    )


def _completed(kafka: dict[str, Any], layout: TopicLayout) -> int:
    from tests.integration.kafka_reading import read_topic

    return len(read_topic(kafka, layout.commands, 4, timeout_s=20))


def priority(args: argparse.Namespace) -> None:
    """A low-priority backlog; one high-priority task at a time, ``--rounds`` times."""
    kafka, layout = _kafka(), _layout()
    fh.STARTS.clear()
    fh.configure(kafka, layout, FlowConfig(queue=QUEUE, window=args.window))
    producer = Producer({**kafka, "linger.ms": 0})
    workers = _workers(kafka, layout, args.workers, args.in_flight)
    fh.send_tasks(producer, layout, QUEUE, args.backlog, key="low", ms=args.ms)
    stop, _ = _dispatch(kafka, layout)
    while len(fh.STARTS) < 100:
        time.sleep(0.05)
    for _ in range(args.rounds):
        fh.send_tasks(producer, layout, QUEUE, 1, key="high", priority=10, ms=args.ms)
        time.sleep(0.5)
    time.sleep(2)
    high = [s for k, _, s in fh.STARTS if k == "high"]
    low = sum(1 for k, _, _ in fh.STARTS if k == "low")
    low_s = statistics.median(s for k, _, s in fh.STARTS if k == "low")
    stop.set()
    _stop(workers)
    print(
        f"priority: window {args.window}, {args.workers}x{args.in_flight} in flight, tasks of "
        f"{args.ms} ms: high-priority schedule-to-start {_pcts(high)}; low started "
        f"{low}/{args.backlog} (their median wait {low_s:.1f}s)",
        flush=True,
    )


def hop(args: argparse.Namespace) -> None:
    """Low load (``--b-rate``/s): schedule-to-start through the dispatcher and without."""
    for fair in (False, True):
        kafka, layout = _kafka(), _layout()
        fh.STARTS.clear()
        if fair:
            fh.configure(kafka, layout, FlowConfig(queue=QUEUE, window=args.window))
        else:
            ensure_topics(AdminClient(kafka), layout, [QUEUE])
        topic = None if fair else layout.task_queue(QUEUE)
        producer = Producer({**kafka, "linger.ms": 0})
        workers = _workers(kafka, layout, args.workers, args.in_flight)
        stop = _dispatch(kafka, layout)[0] if fair else None
        time.sleep(3)
        for _ in range(args.rounds):
            fh.send_tasks(producer, layout, QUEUE, 1, ms=args.ms, topic=topic)
            time.sleep(1 / args.b_rate)
        time.sleep(2)
        waits = [s for _, _, s in fh.STARTS]
        if stop is not None:
            stop.set()
        _stop(workers)
        print(f"hop: flow control {'on' if fair else 'off'}: schedule-to-start {_pcts(waits)}",
              flush=True)  # fmt: skip


def throughput(args: argparse.Namespace) -> None:
    """The dispatcher's own maximum: ``--backlog`` tasks, no limit, no window, no workers."""
    kafka, layout = _kafka(), _layout()
    fh.configure(kafka, layout, FlowConfig(queue=QUEUE, window=0))
    producer = Producer({**kafka, "linger.ms": 5})
    fh.send_tasks(producer, layout, QUEUE, args.backlog, key="A", ms=args.ms)
    stop, _ = _dispatch(kafka, layout)
    released = fh.read_released(kafka, layout.task_queue(QUEUE), args.backlog, 300)
    stop.set()
    times = [r.time_s for r in released]
    span = times[-1] - times[0]
    print(
        f"throughput: {len(times)} released in {span:.1f}s: {len(times) / span:.0f} tasks/s "
        f"(one dispatcher thread, backlog read and released in the same process)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["fairness", "rate", "priority", "hop", "throughput"])
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--b-rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--ms", type=int, default=20, help="each task's run time")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--logs", default="/tmp/flow-bench-logs")
    args = parser.parse_args()
    modes = {"fairness": fairness, "rate": rate, "priority": priority, "hop": hop,
             "throughput": throughput}  # fmt: skip
    modes[args.what](args)


if __name__ == "__main__":
    main()
