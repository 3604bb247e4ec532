"""Workflow run status and its transition table."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TRANSITIONS", "WorkflowStatus", "is_transition_valid"]


class WorkflowStatus(enum.Enum):
    """Where a run is. Terminal: everything except RUNNING and COMPENSATING."""

    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TERMINATED = "TERMINATED"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        """True when no more history is written for the run."""
        return not TRANSITIONS[self]


_CLOSED_BY_CODE: Final = frozenset(
    {
        WorkflowStatus.COMPLETED,
        WorkflowStatus.FAILED,
        WorkflowStatus.CANCELLED,
        WorkflowStatus.TERMINATED,
        WorkflowStatus.CONTINUED_AS_NEW,
        WorkflowStatus.TIMED_OUT,
    }
)

TRANSITIONS: Final[dict[WorkflowStatus, frozenset[WorkflowStatus]]] = {
    WorkflowStatus.RUNNING: _CLOSED_BY_CODE | {WorkflowStatus.COMPENSATING},
    # Compensation either finishes (the code goes on, usually to fail or cancel) or
    # a compensation exhausts its policy.
    WorkflowStatus.COMPENSATING: _CLOSED_BY_CODE
    | {WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATION_FAILED},
    WorkflowStatus.COMPLETED: frozenset(),
    WorkflowStatus.FAILED: frozenset(),
    WorkflowStatus.CANCELLED: frozenset(),
    WorkflowStatus.TERMINATED: frozenset(),
    WorkflowStatus.CONTINUED_AS_NEW: frozenset(),
    WorkflowStatus.COMPENSATION_FAILED: frozenset(),
    WorkflowStatus.TIMED_OUT: frozenset(),
}
"""Allowed next statuses for each status."""


def is_transition_valid(current: WorkflowStatus, new: WorkflowStatus) -> bool:
    """Whether a run may move from ``current`` to ``new``."""
    return new in TRANSITIONS[current]
