"""Migration from queue-based systems: a transactional outbox relay and a queue bridge.

Both turn something an existing system already writes (an outbox row, a legacy
Kafka message) into exactly one saga run, by deriving the workflow id
deterministically (``orchestrator.migration.ids``) and starting it with
``REJECT_DUPLICATE``, so any re-publish after a crash is absorbed by the engine.
See docs/migrating-from-queues.md.
"""

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
