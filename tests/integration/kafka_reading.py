"""Test helpers that read topics to their end (read_committed)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message

from orchestrator.engine.events import Event
from orchestrator.log.reading import read_committed
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard.records import headers_of


def read_topic(
    config: dict[str, Any], topic: str, partitions: int, timeout_s: float = 30
) -> list[Message]:
    """Every committed record of ``topic`` at the time of the call."""
    return read_committed(config, topic, partitions, timeout_s)


def run_history(
    config: dict[str, Any], layout: TopicLayout, workflow_id: str, *, wire: WireFormat
) -> list[Event]:
    """The committed history events of ``workflow_id``'s runs, in log order (snapshots
    left out)."""
    events = []
    for msg in read_topic(config, layout.history, layout.shards):
        key = msg.key() or b""
        if not key.startswith(f"{workflow_id}/".encode()) or b"/snapshot" in key:
            continue
        events.append(wire.decode_event(headers_of(msg), msg.value()).record.event)
    return events
