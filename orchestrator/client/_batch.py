"""Batch verbs of the clients: a batch is a run of the built-in ``saga.batch``
workflow (docs/batch.md), so starting one is a start, following it a query (or,
once it has closed, its result), and cancelling it an update."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.batch.spec import (
    BatchDescription,
    BatchFilter,
    BatchOperation,
    BatchState,
    batch_workflow_id,
    check_batch_id,
)
from orchestrator.exceptions import QueryError

if TYPE_CHECKING:
    from orchestrator.client._async import AsyncWorkflowHandle
    from orchestrator.client._sync import WorkflowHandle

__all__ = ["AsyncBatchHandle", "BatchHandle", "new_batch"]


def new_batch(
    batch_id: str,
    operation: BatchOperation,
    filter: BatchFilter,
    *,
    rate: float,
    page_size: int,
    allow_all: bool = False,
) -> tuple[str, BatchState]:
    """The workflow id and first input of a new batch; ValueError lists what is wrong."""
    check_batch_id(batch_id)
    state = BatchState(batch_id, operation, filter, rate=rate, page_size=page_size)
    problems = state.problems()
    if filter.is_empty() and not allow_all:
        problems.append("the filter matches every run; pass allow_all=True if that is meant")
    if problems:
        raise ValueError(f"batch {batch_id!r}: " + "; ".join(problems))
    return batch_workflow_id(batch_id), state


def _closed(exc: QueryError) -> bool:
    # a query of a closed run is refused; the batch's description is then its result
    return "WorkflowClosed" in str(exc)


class BatchHandle:
    """A batch, for a blocking :class:`~orchestrator.client.Client`."""

    def __init__(self, workflow: WorkflowHandle[Any], batch_id: str) -> None:
        self.batch_id = batch_id
        self.workflow = workflow
        """The handle of the batch's workflow (its id is ``batch:<id>``)."""

    def describe(self, timeout: float = 10.0) -> BatchDescription:
        """Status, counters and totals: from the running batch, or the closed batch's result."""
        try:
            described: BatchDescription = self.workflow.query(
                "describe", timeout=timeout, result_type=BatchDescription
            )
        except QueryError as exc:
            if not _closed(exc):
                raise
            return self.result(timeout)
        return described

    def result(self, timeout: float | None = None) -> BatchDescription:
        """Wait for the batch to end (completed or cancelled): its final description."""
        done: BatchDescription = self.workflow.result(timeout, result_type=BatchDescription)
        return done

    def cancel(self, reason: str = "", timeout: float = 30.0) -> BatchDescription:
        """Stop after the page under way (at most a page of runs still gets the operation)."""
        described: BatchDescription = self.workflow.update(
            "cancel", reason, timeout=timeout, result_type=BatchDescription
        )
        return described


class AsyncBatchHandle:
    """A batch, for an :class:`~orchestrator.client.AsyncClient` (see BatchHandle)."""

    def __init__(self, workflow: AsyncWorkflowHandle[Any], batch_id: str) -> None:
        self.batch_id = batch_id
        self.workflow = workflow

    async def describe(self, timeout: float = 10.0) -> BatchDescription:  # noqa: ASYNC109
        """Status, counters and totals: from the running batch, or the closed batch's result."""
        try:
            described: BatchDescription = await self.workflow.query(
                "describe", timeout=timeout, result_type=BatchDescription
            )
        except QueryError as exc:
            if not _closed(exc):
                raise
            return await self.result(timeout)
        return described

    async def result(self, timeout: float | None = None) -> BatchDescription:  # noqa: ASYNC109
        """Wait for the batch to end: its final description."""
        done: BatchDescription = await self.workflow.result(timeout, result_type=BatchDescription)
        return done

    async def cancel(self, reason: str = "", timeout: float = 30.0) -> BatchDescription:  # noqa: ASYNC109
        """Stop after the page under way."""
        described: BatchDescription = await self.workflow.update(
            "cancel", reason, timeout=timeout, result_type=BatchDescription
        )
        return described
