"""A run's history as the executor reads and writes it: the cursor, the decision check.

The :class:`Journal` holds what every part of a :class:`WorkflowExecutor` shares:
the history (recorded and new events), the replay cursor, the run's loop, the events and commands
made since the last ``apply``, the run's status and workflow time, and the first
fatal error. Decisions go through :meth:`Journal.decide`: while replaying, the
decision must equal the event recorded at the cursor (else a non-determinism
error); after the end of history it is appended. Inputs become events through
:meth:`Journal.accept`, which hands each one to the executor to deliver to the code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from orchestrator.engine import events as ev
from orchestrator.engine.commands import Command
from orchestrator.exceptions import (
    NonDeterminismError,
    NondeterministicCallError,
    QueryError,
    WorkflowTaskError,
)
from orchestrator.status import WorkflowStatus, is_transition_valid

if TYPE_CHECKING:
    from orchestrator.engine.loop import WorkflowEventLoop

__all__ = ["STATUS_OF", "Journal", "describe_decision", "match_key"]

STATUS_OF: dict[type[ev.Event], WorkflowStatus] = {
    ev.CompensationStarted: WorkflowStatus.COMPENSATING,
    ev.CompensationRepaired: WorkflowStatus.COMPENSATING,
    ev.CompensationCompleted: WorkflowStatus.RUNNING,
    ev.WorkflowCompleted: WorkflowStatus.COMPLETED,
    ev.WorkflowFailed: WorkflowStatus.FAILED,
    ev.WorkflowCancelled: WorkflowStatus.CANCELLED,
    ev.WorkflowCompensationFailed: WorkflowStatus.COMPENSATION_FAILED,
    ev.WorkflowContinuedAsNew: WorkflowStatus.CONTINUED_AS_NEW,
    ev.WorkflowTerminated: WorkflowStatus.TERMINATED,
    ev.WorkflowTimedOut: WorkflowStatus.TIMED_OUT,
}
"""The run's status after each event that changes it (the one table of it)."""


def match_key(e: ev.Event) -> tuple[str, ...]:  # noqa: PLR0911
    """What must match between a recorded decision and a replayed one."""
    name = type(e).__name__
    if isinstance(e, ev.ActivityScheduled):
        return (name, e.activity_type)
    if isinstance(e, ev.ActivityCancelRequested):
        return (name, str(e.activity_seq))
    if isinstance(e, ev.ChildWorkflowCancelRequested):
        return (name, str(e.child_seq))
    if isinstance(e, ev.TimerStarted | ev.TimerCancelled):
        return (name, e.timer_id)
    if isinstance(e, ev.ChildWorkflowInitiated):
        return (name, e.workflow_type)
    if isinstance(e, ev.MarkerRecorded):
        return (name, e.marker_name, e.marker_id)
    if isinstance(e, ev.UpdateCompleted):
        return (name, e.update_id)
    if isinstance(e, ev.CompensationStarted | ev.CompensationCompleted):
        return (name, str(e.saga_id))
    if isinstance(e, ev.CompensationFailed):
        return (name, str(e.saga_id), e.activity_type)
    return (name,)


def describe_decision(e: ev.Event) -> str:
    """``ActivityScheduled(charge)``: an event as a non-determinism error names it."""
    key = match_key(e)
    return f"{key[0]}({', '.join(key[1:])})" if len(key) > 1 else key[0]


def _released(e: ev.Event) -> None:
    raise WorkflowTaskError(f"executor released: {type(e).__name__} not delivered")


class Journal:
    """One run's history, replay cursor, pending output, status and fatal error."""

    __slots__ = (
        "_deliver",
        "_history",
        "_started",
        "build_id",
        "closed",
        "commands",
        "cursor",
        "fatal",
        "live",
        "loop",
        "new_events",
        "now",
        "read_only",
        "rejected",
        "status",
        "suppress",
    )

    def __init__(
        self, history: Sequence[ev.Event], build_id: str, deliver: Callable[[ev.Event], None]
    ) -> None:
        self._history: list[ev.Event] = list(history)
        self._deliver = deliver
        self._started: ev.WorkflowStarted | None = None
        self.build_id = build_id
        self.cursor = 0
        self.new_events: list[ev.Event] = []
        self.commands: list[Command] = []
        self.rejected: list[str] = []
        self.status = WorkflowStatus.RUNNING
        self.fatal: BaseException | None = None
        self.now = 0
        """Workflow time (epoch ms) of the event being handled."""
        self.live = False
        """False while a recorded event is delivered, True for a new one."""
        self.closed = False
        self.suppress = False
        """Set while a closed run's leftover coroutines are stopped: nothing is recorded."""
        self.read_only: str | None = None
        """What is running read-only (a query handler, a validator), else None."""
        self.loop: WorkflowEventLoop | None = None
        """The run's deterministic loop, from its start until the executor is released."""

    def workflow_loop(self) -> WorkflowEventLoop:
        """The run's deterministic loop."""
        if self.loop is None:
            raise RuntimeError("the run has not started")
        return self.loop

    def detach(self) -> None:
        """Drop the references back to the executor (it is released)."""
        self.loop = None
        self._deliver = _released

    @property
    def history(self) -> list[ev.Event]:
        """The history itself (recorded and new events), not a copy."""
        return self._history

    @property
    def started(self) -> ev.WorkflowStarted:
        """The run's WorkflowStarted event."""
        if self._started is None:
            raise RuntimeError("the run has not started")
        return self._started

    @property
    def has_started(self) -> bool:
        """Whether the WorkflowStarted event has been delivered."""
        return self._started is not None

    def start(self, e: ev.WorkflowStarted) -> None:
        """Remember the run's first event."""
        self._started = e

    @property
    def replaying(self) -> bool:
        """True while recorded history is being re-run."""
        return self.cursor < len(self._history)

    def next_seq(self) -> int:
        """The seq the next event will get."""
        return len(self._history) + 1

    def peek(self) -> ev.Event | None:
        """The next recorded event when replaying, else None."""
        if self.cursor < len(self._history):
            return self._history[self.cursor]
        return None

    def accept(self, e: ev.Event) -> None:
        """Append input event ``e`` and deliver it to the code."""
        self._history.append(e)
        self.cursor = len(self._history)
        self.new_events.append(e)
        self._deliver(e)

    def decide(self, e: ev.DecisionEvent) -> tuple[ev.DecisionEvent, bool]:
        """Match ``e`` against history when replaying, else record it.

        Returns the effective event (the recorded one when replaying) and whether it
        is new (so its commands must be issued).
        """
        if self.read_only is not None:
            raise QueryError(
                f"{self.read_only} must not change the workflow ({describe_decision(e)})"
            )
        if self.suppress or self.closed:
            return e, False
        if self.cursor < len(self._history):
            rec = self._history[self.cursor]
            if not isinstance(rec, ev.DecisionEvent) or match_key(rec) != match_key(e):
                err = NonDeterminismError(
                    "workflow code issued a different command than history records",
                    seq=rec.seq, expected=describe_decision(rec), actual=describe_decision(e),
                )
                self.fail(err)
                raise err
            self.cursor += 1
            self.set_status(rec)
            return rec, False
        self._history.append(e)
        self.cursor = len(self._history)
        self.new_events.append(e)
        self.set_status(e)
        return e, True

    def set_status(self, e: ev.Event) -> None:
        """Move the status as event ``e`` says (an invalid move is fatal)."""
        new = STATUS_OF.get(type(e))
        if new is None or new is self.status:
            return
        if not is_transition_valid(self.status, new):
            self.fail(WorkflowTaskError(
                f"invalid status transition {self.status.value} -> {new.value} at event {e.seq}"
            ))
            return
        self.status = new

    def fail(self, exc: BaseException) -> None:
        """Keep the first fatal error; ``apply`` raises it."""
        if self.fatal is None:
            self.fatal = exc

    def on_violation(self, message: str) -> None:
        """A sandbox violation in workflow code is fatal to the workflow task."""
        self.fail(NondeterministicCallError(message))

    def raise_fatal(self) -> None:
        """Raise the fatal error if there is one."""
        if self.fatal is not None:
            raise self.fatal

    def take(self) -> tuple[list[ev.Event], list[Command], list[str]]:
        """The new events, commands and refusals since the last call, and reset them."""
        out = (self.new_events, self.commands, self.rejected)
        self.new_events, self.commands, self.rejected = [], [], []
        return out
