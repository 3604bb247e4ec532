"""Publishes start commands (and dead letters) and waits until Kafka has every one.

Shared by the outbox relay and the queue bridge: both must know that a whole batch
is acknowledged (idempotent producer, ``acks=all``) before they mark rows published
or commit consumer offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer

from orchestrator.converter import DataConverter
from orchestrator.exceptions import OrchestratorError
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.records import IdReusePolicy, StartWorkflow
from orchestrator.serde.wire import WireFormat

__all__ = ["PublishError", "StartPublisher"]

_TIMEOUT_S = 30.0
Header = tuple[str, bytes | None]
_OutHeader = tuple[str, str | bytes | None]


class PublishError(OrchestratorError):
    """Kafka did not acknowledge every record of a batch; nothing may be marked done."""


class StartPublisher:
    """Produces start commands to ``<prefix>.commands`` on each workflow's shard.

    Starts use ``REJECT_DUPLICATE``: a start for a workflow id that is running or
    closed creates no second run, which is what makes a re-publish harmless.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        layout: TopicLayout,
        *,
        source: str,
        converter: DataConverter | None = None,
        wire: WireFormat | None = None,
        ack_timeout_s: float = _TIMEOUT_S,
    ) -> None:
        self.layout = layout
        self.source = source
        self.converter = converter or DataConverter()
        self.wire = wire or WireFormat(source=source)
        self.ack_timeout_s = ack_timeout_s
        self._producer = Producer(
            {**kafka_config, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
        self.shards = self._partitions(layout.commands)
        self._errors: list[str] = []

    def _partitions(self, topic: str) -> int:
        found = self._producer.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise PublishError(f"topic {topic} does not exist (run 'saga topics' first)")
        return len(found.partitions)

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def start(
        self,
        *,
        workflow_id: str,
        workflow_type: str,
        task_queue: str,
        input: Any,
        request_id: str,
        memo: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue one start command (call :meth:`flush` to wait for its ack)."""
        command = StartWorkflow(
            workflow_id=workflow_id,
            workflow_type=workflow_type,
            task_queue=task_queue,
            input=[self.converter.to_payload(input)],
            id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE,
            memo={k: self.converter.to_payload(v) for k, v in (memo or {}).items()},
            request_id=request_id,
        )
        record = self.wire.encode_command(command, ce_id=request_id, source=self.source)
        self._producer.produce(
            self.layout.commands,
            key=record.key,
            value=record.value,
            headers=list[_OutHeader](record.headers),
            partition=shard_for(workflow_id, self.shards),
            on_delivery=self._delivered,
        )

    def raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence[Header]
    ) -> None:
        """Queue any record (dead letters)."""
        self._producer.produce(
            topic,
            key=key,
            value=value,
            headers=list[_OutHeader](headers),
            on_delivery=self._delivered,
        )

    def flush(self) -> None:
        """Wait until Kafka acknowledged everything queued; raise :class:`PublishError` if not."""
        left = self._producer.flush(self.ack_timeout_s)
        errors, self._errors = self._errors, []
        if left > 0:
            raise PublishError(f"{left} records not acknowledged in {self.ack_timeout_s:.0f}s")
        if errors:
            raise PublishError(f"{len(errors)} records refused by Kafka, first: {errors[0]}")

    def close(self) -> None:
        """Flush what is pending (best effort) and release the producer."""
        self._producer.flush(self.ack_timeout_s)
