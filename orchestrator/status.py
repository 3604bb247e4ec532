"""The status of a workflow run: one enum for saga code, clients, the engine and the wire.

:class:`WorkflowStatus` is exported by :mod:`orchestrator.workflow` and
:mod:`orchestrator.client`; both names are this one class, so a status read from a
client compares equal to one seen inside the engine or the test environment. Each
member's value is its name, which is also its symbol in the Avro enum
``saga.WorkflowStatus`` of the snapshot schemas (``schemas/saga.history.snapshot.v*.avsc``):
records are written and read by symbol, so the spelling on the wire and in Python
is the same.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TRANSITIONS", "WorkflowStatus", "is_transition_valid"]


class WorkflowStatus(enum.Enum):
    """Where a run is. Open: RUNNING and COMPENSATING; every other status is terminal.

    ``COMPENSATION_FAILED`` is terminal too (the run is closed, its outcome
    reported), but an operator's repair can reopen it: it is then COMPENSATING again.

    ``TIMED_OUT``: the run's ``execution_timeout`` passed; it was cancelled and its
    compensations ran (docs/concepts.md).
    """

    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TERMINATED = "TERMINATED"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"
    TIMED_OUT = "TIMED_OUT"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"

    @property
    def is_terminal(self) -> bool:
        """True once the run is closed (no more history is written, unless an operator
        repairs a COMPENSATION_FAILED run)."""
        return self not in _OPEN


_OPEN: Final = frozenset({WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING})

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
    WorkflowStatus.TIMED_OUT: frozenset(),
    # only by an operator's repair (a CompensationRepaired event): compensation goes on
    WorkflowStatus.COMPENSATION_FAILED: frozenset({WorkflowStatus.COMPENSATING}),
}
"""Allowed next statuses for each status (the engine refuses any other move)."""


def is_transition_valid(current: WorkflowStatus, new: WorkflowStatus) -> bool:
    """Whether a run may move from ``current`` to ``new``."""
    return new in TRANSITIONS[current]
