"""Commands produced the way any Kafka client would, with no project client in between."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer

from orchestrator.converter import DataConverter
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat

WIRE, CONV = WireFormat(), DataConverter()


def produce_start(
    producer: Producer,
    layout: TopicLayout,
    workflow_id: str,
    workflow_type: str,
    task_queue: str,
    args: Sequence[Any],
) -> None:
    """Produce a start command for ``workflow_id`` to its shard (not flushed)."""
    enc = WIRE.encode_command(
        rec.StartWorkflow(
            workflow_id=workflow_id,
            workflow_type=workflow_type,
            task_queue=task_queue,
            input=CONV.to_payloads(list(args)),
        )
    )
    producer.produce(
        layout.commands,
        key=enc.key,
        value=enc.value,
        headers=list(enc.headers),
        partition=shard_for(workflow_id, layout.shards),
    )
