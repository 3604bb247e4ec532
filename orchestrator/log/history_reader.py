"""Read one workflow's history back from its shard partition (for tools: CLI, replay).

This scans the workflow's partition of ``<prefix>.history`` from the start, so its
cost grows with the shard; it is meant for an operator looking at one execution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from orchestrator.engine.events import Event
from orchestrator.log.consuming import consume_available
from orchestrator.log.headers import headers_of
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.log.watermarks import watermarks
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat


@dataclass(frozen=True)
class RunHistory:
    """The latest snapshot of a workflow id and the events of one of its runs."""

    snapshot: rec.WorkflowSnapshot | None
    run_id: str | None
    events: list[Event]


def read_run_history(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    workflow_id: str,
    run_id: str | None = None,
    *,
    wire: WireFormat | None = None,
    timeout_s: float = 60.0,
) -> RunHistory:
    """Events of ``run_id`` (default: the run the latest snapshot names), ordered by seq."""
    wire = wire or WireFormat()
    partition = shard_for(workflow_id, layout.shards)
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": f"{layout.history}.tools",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    prefix = (workflow_id + "/").encode()
    snapshot: rec.WorkflowSnapshot | None = None
    events: dict[str, dict[int, Event]] = {}
    try:
        end = watermarks(consumer, layout.history, partition)[1]
        consumer.assign([TopicPartition(layout.history, partition, OFFSET_BEGINNING)])
        position, deadline = 0, time.monotonic() + timeout_s
        while position < end and time.monotonic() < deadline:
            for msg in consume_available(consumer, 2000, 0.2):
                offset = msg.offset()
                if msg.error() is not None or offset is None:
                    continue
                position = offset + 1
                key = msg.key()
                if key is None or not key.startswith(prefix) or msg.value() is None:
                    continue
                headers = headers_of(msg)
                record = wire.decode_history(headers, msg.value()).record
                if isinstance(record, rec.WorkflowSnapshot):
                    if record.workflow_id == workflow_id:
                        snapshot = record
                elif record.workflow_id == workflow_id:
                    events.setdefault(record.run_id, {})[record.event.seq] = record.event
            position = max(
                position, consumer.position([TopicPartition(layout.history, partition)])[0].offset
            )
    finally:
        consumer.close()
    chosen = run_id or (snapshot.run_id if snapshot is not None else None)
    ordered = [e for _, e in sorted(events.get(chosen, {}).items())] if chosen else []
    return RunHistory(snapshot, chosen, ordered)
