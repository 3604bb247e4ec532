"""The local activity through which a schedule cancels or terminates a running firing
(overlap policies ``cancel_other`` and ``terminate_other``).

The engine worker runs it itself: it writes a CancelWorkflow or TerminateWorkflow
command to the firing's shard and returns once Kafka has it. It does not wait for
the shard's reply (the firing may live on the very shard that is running this
activity). A repeated attempt sends the command again, which is harmless: a
cancel or terminate of a run that is closing or closed changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer

from orchestrator import activity
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.schedules.workflow import STOP_ACTIVITY
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat

__all__ = ["RunStopper"]

_FLUSH_S = 10.0
_MODES = ("cancel", "terminate")


class RunStopper:
    """Sends the stop commands of schedules; one producer per engine worker, made on
    first use."""

    def __init__(self, kafka_config: Mapping[str, Any], layout: TopicLayout) -> None:
        self._config = dict(kafka_config)
        self._layout = layout
        self._wire = WireFormat(source="/saga/schedule")
        self._producer: Producer | None = None

    def activities(self) -> dict[str, Any]:
        """The activity to register with the engine worker's local activities."""
        return {STOP_ACTIVITY: self.stop_run}

    def stop_run(self, workflow_id: str, mode: str, reason: str) -> None:
        """Cancel (``mode="cancel"``) or terminate the latest run of ``workflow_id``."""
        if mode not in _MODES:
            raise ValueError(f"stop mode {mode!r}: expected one of {_MODES}")
        request_id = f"schedule-stop/{activity.info().idempotency_key}"
        command: rec.CancelWorkflow | rec.TerminateWorkflow = (
            rec.CancelWorkflow(workflow_id=workflow_id, reason=reason, request_id=request_id)
            if mode == "cancel"
            else rec.TerminateWorkflow(workflow_id=workflow_id, reason=reason,
                                       request_id=request_id)
        )
        record = self._wire.encode_command(command, ce_id=request_id)
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        producer = self._ensure()
        producer.produce(
            self._layout.commands,
            value=record.value,
            key=record.key,
            partition=shard_for(workflow_id, self._layout.shards),
            headers=list[tuple[str, str | bytes | None]](record.headers),
            on_delivery=delivered,
        )
        if producer.flush(_FLUSH_S) > 0:
            raise TimeoutError(f"{mode} of {workflow_id!r} not acknowledged in {_FLUSH_S:.0f}s")
        if errors:
            raise KafkaException(errors[0])

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._producer = Producer({**self._config, "enable.idempotence": True,
                                       "linger.ms": 0})
        return self._producer

    def close(self) -> None:
        """Flush what is left and let the producer go."""
        if self._producer is not None:
            self._producer.flush(_FLUSH_S)
            self._producer = None
