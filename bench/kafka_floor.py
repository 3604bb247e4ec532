"""The latency floor of Kafka itself on this machine, with no engine in the way.

    .venv/bin/python bench/kafka_floor.py --rate 50 --seconds 20
    .venv/bin/python bench/kafka_floor.py --rate 50 --seconds 20 --mode plain

A client process sends requests at ``--rate``/s and times each until it reads the
answer. A server process answers them the way the engine answers a command:

* ``txn`` (default): read_committed consumer, and for what each poll returns one
  transaction: produce the answers, ``send_offsets_to_transaction``, commit. The
  client reads the answers read_committed. This is one engine hop that a client
  waits for (a saga's close), and nothing else.
* ``plain``: the answers are produced with no transaction (idempotent producer) and
  read read_uncommitted: one Kafka round trip with no commit, as an early-dispatched
  activity task and its result make.

It prints the round trip's p50/p90/p99 and, for ``txn``, the server's mean time in
each step of a commit. A three-step saga makes seven such hops in a row, one of them
committed, so these two figures bound what any engine on Kafka transactions can
reach here. Starts a broker from the jars unless KAFKA_BOOTSTRAP_SERVERS is set;
FLOOR_FETCH_WAIT_MS sets both consumers' ``fetch.wait.max.ms`` (default 100).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.log.consuming import consume_available

ROOT = Path(__file__).resolve().parents[1]
FETCH_WAIT_MS = int(os.environ.get("FLOOR_FETCH_WAIT_MS", "100"))


def _topics(bootstrap: str, prefix: str) -> tuple[str, str]:
    requests, answers = f"{prefix}.req", f"{prefix}.ans"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (requests, answers)]).values():
        future.result(30)
    return requests, answers


def serve(bootstrap: str, prefix: str, mode: str, seconds: float) -> None:
    """Answer every request until ``seconds`` pass with none; print step times as JSON."""
    requests, answers = f"{prefix}.req", f"{prefix}.ans"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}.server",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        }
    )
    consumer.assign([TopicPartition(requests, 0, 0)])
    txn = mode == "txn"
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 0,
            "enable.idempotence": True,
            "retry.backoff.ms": 2,  # as the engine: CONCURRENT_TRANSACTIONS is retried soon
            **({"transactional.id": f"{prefix}.server"} if txn else {}),
        }
    )
    if txn:
        producer.init_transactions(30)
    steps: dict[str, list[float]] = {"produce": [], "offsets": [], "end": []}
    print("ready", flush=True)
    last_seen = time.monotonic()
    while time.monotonic() - last_seen < seconds:
        msgs = [m for m in consume_available(consumer, 100, 0.1) if m.error() is None]
        if not msgs:
            continue
        last_seen = time.monotonic()
        began = time.monotonic()
        if txn:
            producer.begin_transaction()
        for msg in msgs:
            producer.produce(answers, value=msg.value(), partition=0)
        if not txn:
            producer.flush(10)
            steps["produce"].append(time.monotonic() - began)
            continue
        sent = time.monotonic()
        end = max(m.offset() or 0 for m in msgs) + 1
        producer.send_offsets_to_transaction(
            [TopicPartition(requests, 0, end)], consumer.consumer_group_metadata(), 10
        )
        ending = time.monotonic()
        producer.commit_transaction(10)
        steps["produce"].append(sent - began)
        steps["offsets"].append(ending - sent)
        steps["end"].append(time.monotonic() - ending)
    consumer.close()
    print(json.dumps({k: statistics.fmean(v) * 1000 for k, v in steps.items() if v}), flush=True)


def run_client(bootstrap: str, prefix: str, mode: str, rate: float, seconds: float) -> None:
    requests, answers = _topics(bootstrap, prefix)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", prefix, "--bootstrap", bootstrap, "--mode", mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        raise SystemExit("the server process did not start")
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}.client",
            "isolation.level": "read_committed" if mode == "txn" else "read_uncommitted",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        }
    )
    reader.assign([TopicPartition(answers, 0, 0)])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    sent: dict[int, float] = {}
    rtts: list[float] = []
    total = int(rate * seconds)
    warmup = int(rate * 2)
    started = time.monotonic()
    n = 0
    while len(rtts) < total - warmup or n < total:
        now = time.monotonic()
        if n < total and now >= started + n / rate:
            sent[n] = time.monotonic()
            producer.produce(requests, value=struct.pack(">q", n), partition=0)
            producer.poll(0)
            n += 1
            continue
        wait = max(0.0, min(0.002, started + n / rate - now)) if n < total else 0.05
        for msg in consume_available(reader, 100, wait):
            if msg.error() is not None:
                continue
            (i,) = struct.unpack(">q", msg.value())  # type: ignore[arg-type]
            if i >= warmup:
                rtts.append((time.monotonic() - sent.pop(i)) * 1000)
        if n >= total and time.monotonic() - started > seconds + 30:
            break
    server.wait(60)
    out = server.stdout.read().strip().splitlines()
    steps = json.loads(out[-1]) if out else {}
    rtts.sort()

    def pct(p: float) -> float:
        return rtts[min(len(rtts) - 1, int(len(rtts) * p))]

    print(f"mode={mode} rate={rate:g}/s answers={len(rtts)} (after {warmup} warm-up)")
    print(
        f"round trip: p50 {pct(0.5):.1f} ms  p90 {pct(0.9):.1f} ms  p99 {pct(0.99):.1f} ms  "
        f"mean {statistics.fmean(rtts):.1f} ms"
    )
    if steps:
        means = ", ".join(f"{k} {v:.2f} ms" for k, v in steps.items())
        print(f"server, mean per answer batch: {means}")
    print(f"command: {' '.join(sys.argv)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--mode", choices=["txn", "plain"], default="txn")
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.bootstrap, args.serve, args.mode, 3.0)
        return
    bootstrap = args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        run_client(bootstrap, f"floor-{uuid.uuid4().hex[:8]}", args.mode, args.rate, args.seconds)
        return
    sys.path.insert(0, str(ROOT))
    from orchestrator.devstack import providers

    with providers.kafka() as kafka:
        prefix = f"floor-{uuid.uuid4().hex[:8]}"
        run_client(kafka.bootstrap_servers, prefix, args.mode, args.rate, args.seconds)


if __name__ == "__main__":
    main()
