"""Migration from queue-based systems: a transactional outbox relay and a queue bridge.

Both turn something an existing system already writes (an outbox row, a legacy
Kafka message) into exactly one saga run, by deriving the workflow id
deterministically (``orchestrator.migration.ids``) and starting it with
``REJECT_DUPLICATE``, so any re-publish after a crash is absorbed by the engine.
See docs/migrating-from-queues.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from orchestrator.lazy import lazy_attributes

if TYPE_CHECKING:
    from orchestrator.migration.bridge import (
        BridgeMetrics,
        BridgeStart,
        LegacyMessage,
        MalformedMessageError,
        QueueBridge,
        json_translator,
    )
    from orchestrator.migration.ids import (
        bridge_request_id,
        bridge_workflow_id,
        outbox_request_id,
        outbox_workflow_id,
    )
    from orchestrator.migration.outbox import OutboxMetrics, OutboxRelay, migrate
    from orchestrator.migration.publisher import PublishError, StartPublisher

__all__ = [
    "DEFAULT_OUTBOX_TABLE",
    "BridgeMetrics",
    "BridgeStart",
    "LegacyMessage",
    "MalformedMessageError",
    "OutboxMetrics",
    "OutboxRelay",
    "PublishError",
    "QueueBridge",
    "StartPublisher",
    "bridge_request_id",
    "bridge_workflow_id",
    "json_translator",
    "migrate",
    "outbox_request_id",
    "outbox_workflow_id",
]

DEFAULT_OUTBOX_TABLE: Final = "saga_outbox"
"""The outbox table's name unless told otherwise (here, so the CLI needs no psycopg)."""

# imported on first use: `saga worker` loads this package's CLI, not its servers
_MODULES = {
    "BridgeMetrics": "orchestrator.migration.bridge",
    "BridgeStart": "orchestrator.migration.bridge",
    "LegacyMessage": "orchestrator.migration.bridge",
    "MalformedMessageError": "orchestrator.migration.bridge",
    "QueueBridge": "orchestrator.migration.bridge",
    "json_translator": "orchestrator.migration.bridge",
    "bridge_request_id": "orchestrator.migration.ids",
    "bridge_workflow_id": "orchestrator.migration.ids",
    "outbox_request_id": "orchestrator.migration.ids",
    "outbox_workflow_id": "orchestrator.migration.ids",
    "OutboxMetrics": "orchestrator.migration.outbox",
    "OutboxRelay": "orchestrator.migration.outbox",
    "migrate": "orchestrator.migration.outbox",
    "PublishError": "orchestrator.migration.publisher",
    "StartPublisher": "orchestrator.migration.publisher",
}


__getattr__ = lazy_attributes(__name__, _MODULES)
