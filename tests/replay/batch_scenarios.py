"""Scenarios of the built-in ``saga.batch`` workflow, for saved histories (files
``batch_<stem>.json``), recorded in memory by ``python -m
tests.replay.record_batch_histories``. Running batches are executions in production:
every saved history must replay against the current batch workflow
(``test_replay_batches.py``).

The page and count activities are fakes over a listing of 12 runs; their results are
in the histories, so replay needs only the workflow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator import activity
from orchestrator.batch.spec import (
    COUNT_ACTIVITY,
    PAGE_ACTIVITY,
    BatchFilter,
    BatchOp,
    BatchOperation,
    BatchState,
    BatchTotals,
    PageResult,
)
from orchestrator.batch.workflow import BatchWorkflow
from orchestrator.engine import events as ev
from orchestrator.testing import WorkflowEnvironment

START = datetime(2026, 3, 7, 12, tzinfo=UTC)
RUNS = [f"r{i:02}" for i in range(12)]
_FAILED: set[str | None] = set()

#: what a replayer needs for every batch history
WORKFLOWS: list[Any] = [BatchWorkflow]


@activity.defn(name=COUNT_ACTIVITY)
def count(filter: BatchFilter, op: BatchOp) -> int:
    return len(RUNS)


@activity.defn(name=PAGE_ACTIVITY)
def page(
    ledger_id: str, operation: BatchOperation, filter: BatchFilter, cursor: str | None,
    page_size: int, rate: float,
) -> PageResult:
    start = 0 if cursor is None else RUNS.index(cursor) + 1
    if ledger_id.startswith("retried") and cursor == "r03" and cursor not in _FAILED:
        _FAILED.add(cursor)
        raise RuntimeError("the worker died mid-page")
    rows = RUNS[start:start + page_size]
    more = start + page_size < len(RUNS)
    skipped = {"r01/x": "WorkflowClosed: workflow 'r01' is COMPLETED"} if start == 0 else {}
    totals = BatchTotals(done=start + len(rows) - 1, skipped=1, skipped_sample=skipped)
    return PageResult(len(rows), rows[-1] if more else None, totals)


def _state(stem: str, op: BatchOperation, page_size: int) -> BatchState:
    return BatchState(stem, op, BatchFilter(workflow_type="payments.transfer",
                                            status="RUNNING"), rate=2, page_size=page_size)


async def in_memory_histories() -> dict[str, list[ev.Event]]:
    """Each scenario's batch history, by file stem."""
    _FAILED.clear()
    out: dict[str, list[ev.Event]] = {}
    env = WorkflowEnvironment(workflows=WORKFLOWS, activities=[count, page], start_time=START)
    async with env:
        # a signal batch in three pages, the second tried twice
        op = BatchOperation(BatchOp.SIGNAL, reason="INC-1", operator="ann",
                            signal_name="retry", signal_args=["INC-1"])
        handle = await env.start_workflow(BatchWorkflow, _state("retried", op, 4),
                                          id="batch:retried")
        await handle.result()
        out["batch_signal_retried"] = handle.history

        # a reset of a bad build's runs, cancelled after its first page
        op = BatchOperation(BatchOp.RESET, reason="INC-2", operator="bob", bad_build="b7")
        handle = await env.start_workflow(BatchWorkflow, _state("cancelled", op, 3),
                                          id="batch:cancelled")
        await handle.update("cancel", "wrong build")
        await env.sleep(timedelta(seconds=1))
        await handle.result()
        out["batch_reset_cancelled"] = handle.history
    return out
