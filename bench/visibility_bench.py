"""Visibility projector figures: catch-up throughput, live freshness, rebuild time.

    .venv/bin/python bench/visibility_bench.py --runs 5000
    .venv/bin/python bench/visibility_bench.py --runs 5000 --live-rate 200

Starts Kafka and PostgreSQL (``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` or local
ones), writes ``--runs`` closed three-step runs into a history topic the way the
engine does (transactions of events and snapshots: 7 events + 2 snapshots per run),
and measures:

1. catch-up: a projector started on the full topic, until it reached the end
   (events per second of wall time, and per second of time spent in batches);
2. rebuild of the same topic into another table;
3. with ``--live-rate R``: R runs/s written while a projector runs; for every
   transaction, the time from its commit to its runs showing COMPLETED in
   PostgreSQL (sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from typing import Any

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.converter import DataConverter
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.visibility.lag import wait_caught_up
from orchestrator.visibility.projector import Projector
from orchestrator.visibility.rebuild import rebuild

WIRE, CONV = WireFormat(), DataConverter()
RETRY = ev.RetryPolicyRecord(initial_ms=100, backoff=2.0, maximum_ms=1000)
RECORDS_PER_RUN = 9


def run_records(wf_id: str, n: int) -> list[Any]:
    """A closed three-step run: start, two activities, an upsert, completion; 2 snapshots."""
    run_id, t0 = uuid.uuid4().hex, 1_700_000_000_000 + n
    attrs = {"customer": CONV.to_payload(f"c{n % 50}"), "amount": CONV.to_payload(n % 1000)}
    events: list[ev.Event] = [
        ev.WorkflowStarted(
            seq=1,
            time=t0,
            workflow_type="bench.transfer",
            workflow_id=wf_id,
            run_id=run_id,
            task_queue="q",
            input=[CONV.to_payload({"amount": n})],
            search_attributes=attrs,
        ),
        ev.ActivityScheduled(
            seq=2,
            time=t0,
            activity_seq=1,
            activity_type="debit",
            task_queue="q",
            retry_policy=RETRY,
        ),
        ev.ActivityCompleted(seq=3, time=t0, activity_seq=1, attempt=1, result=CONV.to_payload(n)),
        ev.SearchAttributesUpserted(
            seq=4, time=t0, attributes={"stage": CONV.to_payload("debited")}
        ),
        ev.ActivityScheduled(
            seq=5,
            time=t0,
            activity_seq=2,
            activity_type="credit",
            task_queue="q",
            retry_policy=RETRY,
        ),
        ev.ActivityCompleted(seq=6, time=t0, activity_seq=2, attempt=1, result=CONV.to_payload(n)),
        ev.WorkflowCompleted(seq=7, time=t0 + 5, result=CONV.to_payload("ok")),
    ]
    out = [WIRE.encode_event(wf_id, run_id, e) for e in events]
    for status, last in ((rec.WorkflowStatus.RUNNING, 1), (rec.WorkflowStatus.COMPLETED, 7)):
        snap = rec.WorkflowSnapshot(
            workflow_id=wf_id,
            run_id=run_id,
            workflow_type="bench.transfer",
            task_queue="q",
            status=status,
            start_time=t0,
            last_seq=last,
            close_time=t0 + 5 if last == 7 else None,
            search_attributes=attrs,
        )
        out.insert(1 if last == 1 else len(out), WIRE.encode_snapshot(snap))
    return out


def write_runs(
    producer: Producer, layout: TopicLayout, first: int, count: int, shards: int
) -> None:
    producer.begin_transaction()
    for n in range(first, first + count):
        wf_id = f"b-{n}"
        for r in run_records(wf_id, n):
            producer.produce(
                layout.history,
                key=r.key,
                value=r.value,
                headers=list(r.headers),
                partition=shard_for(wf_id, shards),
            )
    producer.commit_transaction(60)


def completed(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM saga_runs WHERE status = 'COMPLETED'").fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--live-rate", type=float, default=0.0, help="runs/s for the live phase")
    parser.add_argument("--live-seconds", type=float, default=20.0)
    args = parser.parse_args()
    with providers.kafka() as kafka, providers.postgres() as pg:
        config = {"bootstrap.servers": kafka.bootstrap_servers}
        layout = TopicLayout(prefix=f"vb{uuid.uuid4().hex[:6]}", shards=args.shards)
        ensure_topics(AdminClient(config), layout)
        producer = Producer({**config, "transactional.id": f"{layout.prefix}-w", "linger.ms": 5})
        producer.init_transactions(30)
        began = time.monotonic()
        for first in range(0, args.runs, 100):
            write_runs(producer, layout, first, min(100, args.runs - first), args.shards)
        print(
            f"wrote {args.runs:,} runs ({args.runs * RECORDS_PER_RUN:,} records) "
            f"in {time.monotonic() - began:.1f}s"
        )

        began = time.monotonic()
        with Projector(pg.dsn, config, layout) as projector:
            lag = wait_caught_up(pg.dsn, config, layout, timeout_s=600)
            wall = time.monotonic() - began
            m = projector.metrics
            assert not lag and projector.error is None, (lag, projector.error)
            print(
                f"catch-up: {m.events:,} events ({m.records:,} records) in {wall:.2f}s wall = "
                f"{m.events / wall:,.0f} events/s ({m.records / wall:,.0f} records/s); "
                f"in batches {m.busy_s:.2f}s = {m.events / m.busy_s:,.0f} events/s; "
                f"{m.batches} batches, {m.records / max(m.batches, 1):,.0f} records each"
            )
            if args.live_rate:
                live(pg.dsn, producer, layout, args, projector)

        stats = rebuild(pg.dsn, config, layout, into="saga_runs_rebuilt")
        print(
            f"rebuild: {stats.rows:,} runs from {stats.records:,} records in {stats.seconds:.2f}s "
            f"= {stats.records / stats.seconds:,.0f} records/s"
        )


def live(
    dsn: str, producer: Producer, layout: TopicLayout, args: argparse.Namespace, projector: Any
) -> None:
    """Runs written at a steady rate; per transaction, commit-to-visible delay."""
    base = args.runs
    per_txn = max(1, round(args.live_rate / 10))  # ten transactions per second
    committed: list[tuple[float, int]] = []  # (commit time, COMPLETED rows expected after it)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(dsn) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM saga_runs WHERE status = 'COMPLETED'"
                ).fetchone()
                samples.append((time.monotonic(), int(row[0]) if row else 0))
                conn.commit()
                time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0, sent = time.monotonic(), 0
    while time.monotonic() - t0 < args.live_seconds:
        write_runs(producer, layout, base + sent, per_txn, args.shards)
        sent += per_txn
        committed.append((time.monotonic(), base + sent))
        delay = t0 + sent / args.live_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    deadline = time.monotonic() + 60
    while completed(dsn) < base + sent and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    stop.set()
    sampler.join(5)
    delays = []
    for at, want in committed:
        seen = next((t for t, n in samples if t >= at and n >= want), None)
        if seen is not None:
            delays.append((seen - at) * 1000)
    q = statistics.quantiles(delays, n=100)
    print(
        f"live at {args.live_rate:.0f} runs/s ({args.live_rate * RECORDS_PER_RUN:,.0f} records/s) "
        f"for {args.live_seconds:.0f}s: commit -> visible p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms, "
        f"max {max(delays):.0f} ms over {len(delays)} transactions (sampling every 20 ms); "
        f"projector batches {projector.metrics.batches}"
    )


if __name__ == "__main__":
    main()
