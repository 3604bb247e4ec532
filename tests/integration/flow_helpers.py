"""Helpers of the flow-control tests and bench/flow_bench.py: configure a queue, fill
its backlog, run a dispatcher process, read what it released."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from orchestrator import activity
from orchestrator.converter import DataConverter
from orchestrator.flow.configs import configure_queue
from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.topics import TopicLayout
from orchestrator.serde import ActivityTask, WireFormat

CONV = DataConverter()
WIRE = WireFormat()

#: (fairness key, priority, seconds from the task's send to its start), per task (its
#: first start: a worker rebalance may deliver a task again, at least once by contract)
STARTS: list[tuple[str, int, float]] = []
_STARTED: set[str] = set()


@activity.defn(name="flow_nap")
async def flow_nap(ms: int, sent_at: float, key: str, priority: int) -> None:
    """Records when it started, relative to when the test sent the task."""
    workflow_id = activity.info().workflow_id
    if workflow_id in _STARTED:
        return
    _STARTED.add(workflow_id)
    log = os.environ.get("FLOW_STARTS_FILE")  # worker processes: one line per start
    if log:
        with Path(log).open("a", encoding="utf-8") as out:  # noqa: ASYNC230 - a bench log
            out.write(f"{time.time()}\n")
    STARTS.append((key, priority, time.time() - sent_at))
    await asyncio.sleep(ms / 1000)


def configure(kafka_config: dict[str, Any], layout: TopicLayout, config: FlowConfig) -> None:
    """Create the queue's topics and write its flow control."""
    configure_queue(kafka_config, layout, config)


def send_tasks(
    producer: Producer,
    layout: TopicLayout,
    queue: str,
    n: int,
    *,
    key: str = "",
    priority: int = 0,
    ms: int = 5,
    topic: str | None = None,
) -> list[str]:
    """Write ``n`` tasks of ``flow_nap`` to the queue's backlog (or ``topic``); their ce ids."""
    ids = []
    now = time.time()
    for _ in range(n):
        task = ActivityTask(
            workflow_id=f"wf-{uuid.uuid4().hex[:12]}",
            run_id="r1",
            activity_seq=1,
            activity_type="flow_nap",
            attempt=1,
            task_queue=queue,
            scheduled_time=int(now * 1000),
            args=CONV.to_payloads([ms, now, key, priority]),
            priority=priority,
            fairness_key=key,
        )
        encoded = WIRE.encode_task(task)
        producer.produce(
            topic or layout.backlog(queue),
            key=encoded.key,
            value=encoded.value,
            headers=list(encoded.headers),
        )
        ids.append(dict(encoded.headers)["ce_id"].decode())
        producer.poll(0)
    producer.flush(30)
    return ids


@dataclass(frozen=True)
class Released:
    ce_id: str
    time_s: float
    partition: int
    offset: int


def read_released(
    kafka_config: dict[str, Any], topic: str, until_count: int, timeout_s: float
) -> list[Released]:
    """Every committed record of ``topic`` (all partitions), in release-time order."""
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[Released] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < until_count and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error():
                    continue
                ce_id = dict(msg.headers() or []).get("ce_id", b"")
                assert isinstance(ce_id, bytes)
                _, ts = msg.timestamp()
                out.append(
                    Released(ce_id.decode(), ts / 1000, msg.partition() or 0, msg.offset() or 0)
                )
    finally:
        consumer.close()
    return sorted(out, key=lambda r: r.time_s)


def max_in_window(times: Iterable[float], window_s: float) -> int:
    """The most releases within any ``window_s`` seconds."""
    ts = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(ts):
        while ts[j] < t - window_s:
            j += 1
        best = max(best, i - j + 1)
    return best


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]
