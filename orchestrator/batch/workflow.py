"""The built-in ``saga.batch`` workflow: one run per batch job, paging through the
visibility store and applying one operation to each run it lists.

The loop is: count the matching runs once (the total estimate), then one page
activity after another, each given the cursor the previous one returned. The
cursor, the page count and the totals live in the workflow's state, so a crash
anywhere resumes at the page that was not recorded as done; the page activity is
idempotent per run (its ledger, :mod:`orchestrator.batch.pages`), so a page done
twice touches no run twice. The page activities go through the ``saga.batch``
task queue, not local activities: applying an operation waits for the answer of
the run's shard, which may be the very shard that runs the batch.

A run continues as new after :data:`CONTINUE_AFTER` pages, so its history stays
bounded however many runs the filter matches.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from orchestrator import workflow
from orchestrator.batch.spec import (
    BATCH_TASK_QUEUE,
    BATCH_WORKFLOW,
    COUNT_ACTIVITY,
    PAGE_ACTIVITY,
    BatchDescription,
    BatchState,
    BatchStatus,
    PageResult,
)
from orchestrator.schedules.calendar import to_ms, utc

__all__ = [
    "CONTINUE_AFTER",
    "BatchWorkflow",
    "apply_page",
    "begin",
    "describe_state",
    "page_timeout",
]

CONTINUE_AFTER = 50
"""Pages after which a batch run continues as new."""

_RETRY = workflow.RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=30))
_SLACK_S = 120.0


def page_timeout(page_size: int, rate: float) -> timedelta:
    """How long one page attempt may take: its paced operations plus slack for the
    shards' answers (an attempt that outlives it is retried; the ledger makes that safe)."""
    paced = page_size / rate if rate > 0 else 0.0
    return timedelta(seconds=paced + _SLACK_S)


def apply_page(state: BatchState, page: PageResult, now_ms: int) -> None:
    """Record a finished page in the state: its cursor, counters and the totals."""
    state.pages += 1
    state.listed += page.listed
    state.cursor = page.next_cursor
    state.totals = page.totals
    state.updated_ms = now_ms
    if page.next_cursor is None:
        state.status = BatchStatus.COMPLETED


def begin(state: BatchState, now_ms: int, token: str) -> None:
    """First run of a batch: note when, draw its ledger key, and leave out runs that
    start from now on."""
    if state.created_ms:
        return
    state.created_ms = state.updated_ms = now_ms
    state.ledger_id = f"{state.batch_id}/{token}"
    before = state.filter.started_before
    limit = utc(now_ms)
    if before is None or before > limit:
        state.filter = replace(state.filter, started_before=limit)


def describe_state(state: BatchState) -> BatchDescription:
    """The state as ``describe`` answers it."""
    return BatchDescription(
        batch_id=state.batch_id,
        operation=state.operation,
        filter=state.filter,
        status=state.status,
        rate=state.rate,
        page_size=state.page_size,
        total=state.total,
        listed=state.listed,
        pages=state.pages,
        totals=state.totals,
        created_at=utc(state.created_ms),
        updated_at=utc(state.updated_ms),
        cancel_reason=state.cancel_reason,
    )


@workflow.defn(name=BATCH_WORKFLOW)
class BatchWorkflow:
    """One batch job. Input: its :class:`BatchState`; result: its final description."""

    def __init__(self) -> None:
        self._state: BatchState | None = None
        self._cancel = False

    @property
    def state(self) -> BatchState:
        assert self._state is not None
        return self._state

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext, state: BatchState) -> BatchDescription:
        self._state = state
        begin(state, to_ms(ctx.now()), ctx.uuid4().hex[:12])
        if state.total is None:
            state.total = await ctx.execute_activity(
                COUNT_ACTIVITY, state.filter, state.operation.op, task_queue=BATCH_TASK_QUEUE,
                start_to_close=timedelta(minutes=1), retry=_RETRY, result_type=int,
            )
        pages_here = 0
        while state.status is BatchStatus.RUNNING:
            if self._cancel or state.cancel_reason:  # asked before or after a continue
                state.status = BatchStatus.CANCELLED
                break
            if pages_here >= CONTINUE_AFTER:
                ctx.continue_as_new(state)
            page = await ctx.execute_activity(
                PAGE_ACTIVITY,
                state.ledger_id,
                state.operation,
                state.filter,
                state.cursor,
                state.page_size,
                state.rate,
                task_queue=BATCH_TASK_QUEUE,
                start_to_close=page_timeout(state.page_size, state.rate),
                retry=_RETRY,
                result_type=PageResult,
            )
            pages_here += 1
            apply_page(state, page, to_ms(ctx.now()))
        state.updated_ms = to_ms(ctx.now())
        return describe_state(state)

    @workflow.update(name="cancel")
    def cancel(self, reason: str) -> BatchDescription:
        """Stop after the page under way (its runs are dealt with; no later page starts)."""
        if self.state.status is BatchStatus.RUNNING:
            self._cancel = True
            self.state.cancel_reason = reason or "cancelled"
        return describe_state(self.state)

    @workflow.query(name="describe")
    def describe(self) -> BatchDescription:
        """Operation, filter, status, counters and totals so far."""
        return describe_state(self.state)
