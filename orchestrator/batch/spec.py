"""The records of a batch operation: what it does, to which runs, and how far it is.

Plain dataclasses that the default payload converter encodes as JSON: they travel
as the input, activity arguments and results, query answers and result of the
built-in ``saga.batch`` workflow (docs/batch.md).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "BATCH_ID_RE",
    "BATCH_TASK_QUEUE",
    "BATCH_WORKFLOW",
    "COUNT_ACTIVITY",
    "PAGE_ACTIVITY",
    "SAMPLES",
    "BatchDescription",
    "BatchFilter",
    "BatchOp",
    "BatchOperation",
    "BatchState",
    "BatchStatus",
    "BatchTotals",
    "PageResult",
    "batch_workflow_id",
    "check_batch_id",
    "parked_filter",
]

BATCH_WORKFLOW = "saga.batch"
"""The workflow type of every batch job."""

BATCH_TASK_QUEUE = "saga.batch"
"""The task queue of the batch activities (every ``saga worker`` with an engine serves it)."""

PAGE_ACTIVITY = "saga.batch.page"
"""Applies the operation to the runs of one page of the visibility listing."""

COUNT_ACTIVITY = "saga.batch.count"
"""Counts the runs the filter matches (the total estimate)."""

SAMPLES = 10
"""How many skipped and failed runs a batch keeps, with why, for ``describe``."""

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
"""Batch ids: letters, digits, ``.``, ``_``, ``-`` (they become part of workflow ids)."""


class BatchOp(enum.StrEnum):
    """What a batch does to each run."""

    RESET = "reset"
    SIGNAL = "signal"
    CANCEL = "cancel"
    TERMINATE = "terminate"
    PAUSE = "pause"
    UNPAUSE = "unpause"


class BatchStatus(enum.StrEnum):
    """Where a batch job is."""

    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class BatchOperation:
    """The operation and its arguments. ``reason`` and ``operator`` go with every
    command; ``bad_build`` / ``event_seq`` / ``exclude_signals`` are reset's point
    (``bad_build``: just before that build's first decision; neither: the run's last
    decision point); ``signal_name`` and ``signal_args`` are signal's."""

    op: BatchOp
    reason: str = ""
    operator: str = ""
    bad_build: str | None = None
    event_seq: int | None = None
    exclude_signals: bool = False
    signal_name: str | None = None
    signal_args: list[Any] = field(default_factory=list)

    def problems(self) -> list[str]:
        """What is wrong with it (empty when valid)."""
        found: list[str] = []
        if self.op is BatchOp.SIGNAL and not self.signal_name:
            found.append("a signal batch needs a signal name")
        if self.op is not BatchOp.SIGNAL and (self.signal_name or self.signal_args):
            found.append("signal name and arguments are for signal batches only")
        if self.op is BatchOp.RESET and self.bad_build and self.event_seq is not None:
            found.append("reset: give either a bad build or an event, not both")
        if self.op is not BatchOp.RESET and (
            self.bad_build or self.event_seq is not None or self.exclude_signals
        ):
            found.append("a reset point is for reset batches only")
        if self.op is BatchOp.TERMINATE and not self.reason:
            found.append("terminate needs a reason")
        return found


def parked_filter(op: BatchOp) -> bool | None:
    """The ``parked`` argument of the batch's listing: parked runs only take a reset
    (their shard dead-letters any other command), so every other op leaves them out."""
    return None if op is BatchOp.RESET else False


@dataclass(frozen=True, slots=True)
class BatchFilter:
    """Which runs: the filters ``saga list`` takes (all given must match).

    ``started_before`` is set to the batch's creation time when not given earlier, so
    runs that start while the batch goes (a reset's new runs among them) are never
    part of it."""

    workflow_type: str | None = None
    status: str | None = None
    build_id: str | None = None
    search: dict[str, Any] = field(default_factory=dict)
    started_after: datetime | None = None
    started_before: datetime | None = None

    def store_args(self) -> dict[str, Any]:
        """Keyword arguments of ``VisibilityStore.list_runs`` / ``count_runs``."""
        return {
            "workflow_type": self.workflow_type,
            "status": self.status,
            "build_id": self.build_id,
            "search": self.search or None,
            "started_after": self.started_after,
            "started_before": self.started_before,
        }

    def is_empty(self) -> bool:
        """True when it would match every run (refused unless asked for)."""
        return not (self.workflow_type or self.status or self.build_id or self.search
                    or self.started_after or self.started_before)


@dataclass(frozen=True, slots=True)
class BatchTotals:
    """Per-run outcomes so far, read from the batch's ledger (each run counted once)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    in_doubt: int = 0
    """Runs claimed by an attempt cut off before the shard's answer and not dealt with
    since (the page runs again and sends the operation again, so a finished batch
    normally has none)."""
    skipped_sample: dict[str, str] = field(default_factory=dict)
    """``workflow_id/run_id`` -> why (at most :data:`SAMPLES`)."""
    failed_sample: dict[str, str] = field(default_factory=dict)

    @property
    def processed(self) -> int:
        """Runs dealt with, whatever the outcome."""
        return self.done + self.skipped + self.failed + self.in_doubt


@dataclass(frozen=True, slots=True)
class PageResult:
    """What one page activity did: the cursor after its page, and the batch's totals."""

    listed: int
    next_cursor: str | None
    totals: BatchTotals


@dataclass(slots=True)
class BatchState:
    """Everything a batch run carries into the next (the run's input)."""

    batch_id: str
    operation: BatchOperation
    filter: BatchFilter
    rate: float = 10.0
    """Operations per second at most (0: as fast as the shards answer)."""
    page_size: int = 100
    status: BatchStatus = BatchStatus.RUNNING
    cursor: str | None = None
    """The visibility cursor after the last page done (None: from the start)."""
    pages: int = 0
    listed: int = 0
    total: int | None = None
    """How many runs the filter matched when the batch began (an estimate: runs change)."""
    totals: BatchTotals = field(default_factory=BatchTotals)
    created_ms: int = 0
    updated_ms: int = 0
    cancel_reason: str = ""
    ledger_id: str = ""
    """The batch's key in the ledger: its id and a token drawn when it began, so an id
    used again (after the old batch's retention) starts a new ledger."""

    def problems(self) -> list[str]:
        """What is wrong with it (empty when valid)."""
        found = list(self.operation.problems())
        if not BATCH_ID_RE.match(self.batch_id):
            found.append(f"batch id {self.batch_id!r}: use letters, digits, '.', '_', '-'")
        if self.rate < 0:
            found.append("rate must be 0 (unlimited) or positive")
        if not 1 <= self.page_size <= 1000:
            found.append("page size must be between 1 and 1000")
        return found


@dataclass(frozen=True, slots=True)
class BatchDescription:
    """A batch as its workflow has it (``describe``; also the result of a closed batch)."""

    batch_id: str
    operation: BatchOperation
    filter: BatchFilter
    status: BatchStatus
    rate: float
    page_size: int
    total: int | None
    listed: int
    pages: int
    totals: BatchTotals
    created_at: datetime
    updated_at: datetime
    cancel_reason: str = ""


def check_batch_id(batch_id: str) -> str:
    """``batch_id`` if valid, else ValueError."""
    if not BATCH_ID_RE.match(batch_id):
        raise ValueError(f"batch id {batch_id!r}: use letters, digits, '.', '_', '-'")
    return batch_id


def batch_workflow_id(batch_id: str) -> str:
    """The workflow id of a batch's runs."""
    return f"batch:{batch_id}"
