"""Clients for outside callers: start workflows and signal, cancel, update, query them.

``Client`` blocks (confluent-kafka); ``AsyncClient`` is for asyncio (aiokafka, the
``asyncio`` extra: ``pip install 'saga-orchestrator[asyncio]'``). Both
write commands to ``<prefix>.commands`` keyed by workflow id, on partition
``shard_for(workflow_id, N)``, as CloudEvents binary-mode records (``ce_specversion``,
``ce_id``, ``ce_type``, ``ce_source``, ``content-type``) with a W3C ``traceparent``
(a fresh one when the caller passes none).

Reply correlation (docs/clients.md): every command a client sends carries a fresh
UUID (32 hex digits) as its ``request_id`` (start, signal, cancel, terminate, pause,
unpause; a signal's is the caller's when given ``request_id=``),
``update_id`` or ``query_id``, and the same value as its ``ce_id``. The shard
answers on ``<prefix>.replies`` with ``Reply.correlation_id`` set to that id (a
command without one is answered with its ``ce_id``), and the record key is the
correlation id. When a run closes, the shard also writes a RESULT reply whose
correlation id is ``result/<workflow_id>``. A client follows every partition of
the replies topic from its end (read_committed, no consumer group) and picks
replies by correlation id; ``result()`` falls back to the workflow's snapshot, asked
of the shard that owns it, when the run closed before the client started.
"""

from typing import TYPE_CHECKING

from orchestrator.client._batch import AsyncBatchHandle, BatchHandle
from orchestrator.client._common import (
    PauseInfo,
    PendingActivityInfo,
    RepairInfo,
    ReplyTimeoutError,
    WorkflowDescription,
    WorkflowNotFoundError,
    new_traceparent,
    result_correlation_id,
)
from orchestrator.client._schedules import AsyncScheduleHandle, ScheduleHandle
from orchestrator.client._sync import Client, WorkflowHandle
from orchestrator.lazy import lazy_attributes
from orchestrator.serde.records import IdReusePolicy
from orchestrator.status import WorkflowStatus

if TYPE_CHECKING:
    from orchestrator.client._async import AsyncClient, AsyncWorkflowHandle

# the asyncio client needs aiokafka (the `asyncio` extra): imported when first used
__getattr__ = lazy_attributes(
    __name__,
    {
        "AsyncClient": "orchestrator.client._async",
        "AsyncWorkflowHandle": "orchestrator.client._async",
    },
)

__all__ = [
    "AsyncBatchHandle",
    "AsyncClient",
    "AsyncScheduleHandle",
    "AsyncWorkflowHandle",
    "BatchHandle",
    "Client",
    "IdReusePolicy",
    "PauseInfo",
    "PendingActivityInfo",
    "RepairInfo",
    "ReplyTimeoutError",
    "ScheduleHandle",
    "WorkflowDescription",
    "WorkflowHandle",
    "WorkflowNotFoundError",
    "WorkflowStatus",
    "new_traceparent",
    "result_correlation_id",
]
