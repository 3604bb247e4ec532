"""How long a dead or stopped group member's partitions go unserved, per membership mode.

Two consumer processes (``a`` and ``b``) share a topic of 8 partitions that gets one
record per partition every 20 ms. Then ``a`` is SIGKILLed and started again after
``--restart-after`` seconds (``--scenario kill``), or stopped with SIGTERM and not
restarted (``--scenario term``). Every consumed record is logged with the time it
was consumed; the figure is each partition's longest gap in consumption after the
event, i.e. how long that partition was unserved.

Modes: ``--protocol classic`` (cooperative-sticky, ``session.timeout.ms``
``--session-ms``) or ``consumer`` (KIP-848: the broker's session timeout applies),
each ``--static`` (``group.instance.id`` = the member's name, the same after a
restart) or dynamic. ``--close`` is how a member stops: ``plain`` (``close()``),
``unsubscribe`` (``unsubscribe()`` then ``close()``) or ``leave``
(``orchestrator.worker.membership.GroupConsumer``, which leaves before it closes).

    python -m bench.group_handover --bootstrap 127.0.0.1:9092 --protocol classic --static \
        --scenario term --close leave
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.worker.membership import GroupConsumer

PARTITIONS = 8
TICK_S = 0.02


def member_config(args: argparse.Namespace, name: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "latest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 200,
    }
    if args.protocol == "consumer":
        config["group.protocol"] = "consumer"
    else:
        config["partition.assignment.strategy"] = "cooperative-sticky"
        config["session.timeout.ms"] = args.session_ms
        config["heartbeat.interval.ms"] = max(100, args.session_ms // 4)
    if args.static:
        config["group.instance.id"] = f"{args.group}.{name}"
    return config


def run_member(args: argparse.Namespace) -> None:
    """One member: log ``time partition`` for every consumed record until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    kind = GroupConsumer if args.close == "leave" else Consumer
    consumer = kind(member_config(args, args.name))
    consumer.subscribe([args.topic])
    with Path(args.out).open("a") as out:
        while not stop.is_set():
            lines = [
                f"{time.time():.3f} {m.partition()}\n"
                for m in consumer.consume(100, 0.05)
                if m.error() is None
            ]
            out.writelines(lines)
            out.flush()
    began = time.time()
    if args.close == "unsubscribe":
        consumer.unsubscribe()
    consumer.close()
    print(f"{args.name}: closed in {time.time() - began:.2f}s", file=sys.stderr)


def spawn(args: argparse.Namespace, name: str, out: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "bench.group_handover", "--member", name, "--out", str(out)]
    argv += ["--bootstrap", args.bootstrap, "--topic", args.topic, "--group", args.group]
    argv += ["--protocol", args.protocol, "--session-ms", str(args.session_ms)]
    argv += ["--static"] if args.static else []
    argv += ["--close", args.close]
    return subprocess.Popen(argv)


def produce(bootstrap: str, topic: str, stop: threading.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    while not stop.wait(TICK_S):
        for p in range(PARTITIONS):
            producer.produce(topic, b"x", partition=p)
        producer.poll(0)
    producer.flush(10)


def gaps_after(logs: list[Path], event: float) -> dict[int, float]:
    """Per partition: the longest time without a consumed record from ``event`` on."""
    times: dict[int, list[float]] = {p: [event] for p in range(PARTITIONS)}
    for path in logs:
        for line in path.read_text().splitlines():
            at, partition = line.split()
            if float(at) >= event:
                times[int(partition)].append(float(at))
    gaps = {}
    for p, ts in times.items():
        ts.sort()
        gaps[p] = max((b - a for a, b in itertools.pairwise(ts)), default=float("inf"))
    return gaps


def run_scenario(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(args.topic, PARTITIONS, 1)])[args.topic].result(30)
    stop = threading.Event()
    producer = threading.Thread(target=produce, args=(args.bootstrap, args.topic, stop))
    producer.start()
    logs = {n: workdir / f"{n}.log" for n in ("a", "b")}
    members = {n: spawn(args, n, logs[n]) for n in ("a", "b")}
    try:
        time.sleep(args.settle_s)
        event = time.time()
        if args.scenario == "kill":
            members["a"].kill()
            members["a"].wait()
            time.sleep(args.restart_after)
            members["a"] = spawn(args, "a", logs["a"])
        else:
            members["a"].terminate()
            members["a"].wait(60)
        time.sleep(args.observe_s)
    finally:
        stop.set()
        producer.join()
        for proc in members.values():
            proc.terminate()
            proc.wait(60)
    gaps = gaps_after(list(logs.values()), event)
    return {
        "protocol": args.protocol,
        "static": args.static,
        "close": args.close,
        "scenario": args.scenario,
        "restart_after_s": args.restart_after if args.scenario == "kill" else None,
        "max_gap_s": round(max(gaps.values()), 2),
        "gaps_s": {p: round(g, 2) for p, g in gaps.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--protocol", choices=["classic", "consumer"], default="classic")
    parser.add_argument("--static", action="store_true")
    parser.add_argument("--close", choices=["plain", "unsubscribe", "leave"], default="plain")
    parser.add_argument("--scenario", choices=["kill", "term"], default="kill")
    parser.add_argument("--session-ms", type=int, default=10_000)
    parser.add_argument("--restart-after", type=float, default=2.0)
    parser.add_argument("--settle-s", type=float, default=8.0)
    parser.add_argument("--observe-s", type=float, default=20.0)
    parser.add_argument("--topic", default=f"handover-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--group", default=f"handover-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--member", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.member is not None:
        args.name = args.member
        run_member(args)
        return
    workdir = Path(f"/tmp/{args.group}")
    workdir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run_scenario(args, workdir)))


if __name__ == "__main__":
    main()
