"""Batch operations: one operation (reset, signal, cancel, terminate, pause, unpause)
applied to every run a visibility filter matches, as a durable server-side job
(docs/batch.md).

A batch is a run of the built-in ``saga.batch`` workflow; these are its records and
the workflow itself. Clients start and follow batches through
:class:`orchestrator.client.Client` (``start_batch``, ``batch_handle``).
"""

from orchestrator.batch.spec import (
    BatchDescription,
    BatchFilter,
    BatchOp,
    BatchOperation,
    BatchStatus,
    BatchTotals,
)

__all__ = [
    "BatchDescription",
    "BatchFilter",
    "BatchOp",
    "BatchOperation",
    "BatchStatus",
    "BatchTotals",
]
