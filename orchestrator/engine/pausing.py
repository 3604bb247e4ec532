"""An operator's pause of one run: what is held while paused, and the unpause.

After ``PauseWorkflow`` the run's inputs are recorded as ``InputDeferred`` events
(:mod:`orchestrator.engine.deferral`) instead of reaching the code; ``UnpauseWorkflow``
records ``WorkflowUnpaused`` and feeds the held inputs back in the order they came.
Terminate and heartbeats pass through a pause.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from orchestrator.converter import Payload
from orchestrator.engine import events as ev
from orchestrator.engine.deferral import from_deferred, to_deferred
from orchestrator.engine.inputs import (
    ActivityTaskCompleted,
    ActivityTaskFailed,
    FireTimer,
    Input,
    PauseWorkflow,
    RequestUpdate,
    SendSignal,
    UnpauseWorkflow,
)
from orchestrator.exceptions import NonDeterminismError, WorkflowTaskError

if TYPE_CHECKING:
    from orchestrator.engine.activities import Activities
    from orchestrator.engine.journal import Journal

__all__ = ["PauseGate"]

SignalCheck = Callable[[str, Sequence[Payload]], "str | None"]
"""Why the run's handler cannot take a signal's arguments, or None."""


class PauseGate:
    """Whether a run is paused, and the inputs held until it is unpaused."""

    __slots__ = ("_activities", "_deferred", "_j", "paused")

    def __init__(self, journal: Journal, activities: Activities) -> None:
        self._j = journal
        self._activities = activities
        self.paused: ev.WorkflowPaused | None = None
        """The pause in force, None when not paused."""
        self._deferred: list[Input] = []

    def held_timer_ids(self) -> set[str]:
        """Timers that fired while paused: held in history, they must not fire again."""
        return {i.timer_id for i in self._deferred if isinstance(i, FireTimer)}

    def handle(self, inp: PauseWorkflow | UnpauseWorkflow, apply: Callable[[Input], None]) -> None:
        """Pause, or unpause and ``apply`` the held inputs in order; a repeat is a no-op."""
        j = self._j
        seq, now = j.next_seq(), j.now
        if isinstance(inp, PauseWorkflow):
            if self.paused is None:
                j.accept(ev.WorkflowPaused(seq=seq, time=now, reason=inp.reason,
                                           operator=inp.operator))
            return
        if self.paused is None:
            return
        held = self._deferred
        j.accept(ev.WorkflowUnpaused(seq=seq, time=now, reason=inp.reason,
                                     operator=inp.operator))
        for given in held:
            if j.closed and not isinstance(given, RequestUpdate):
                continue
            apply(given)
            j.raise_fatal()

    def hold(self, inp: Input, check_signal: SignalCheck) -> bool:
        """While paused: record ``inp`` to apply on unpause. False for inputs a pause
        lets through (terminate, heartbeats). A signal its handler cannot take
        (``check_signal`` says why) is refused now, as it would be when running."""
        j = self._j
        if j.closed:
            return False  # terminated while paused: nothing is held after the end
        if isinstance(inp, SendSignal):
            problem = check_signal(inp.name, inp.args)
            if problem is not None:
                j.rejected.append(problem)
                return True
        if isinstance(inp, FireTimer) and any(
            isinstance(i, FireTimer) and i.timer_id == inp.timer_id for i in self._deferred
        ):
            return True  # fired again after a restore: held once is enough
        if isinstance(inp, ActivityTaskCompleted | ActivityTaskFailed) and (
            not self._activities.attempt_running(inp.activity_seq, inp.attempt)
            or any(
                isinstance(i, ActivityTaskCompleted | ActivityTaskFailed)
                and (i.activity_seq, i.attempt) == (inp.activity_seq, inp.attempt)
                for i in self._deferred
            )
        ):
            return True  # a late or repeated report (at least once): it would not count
        held = to_deferred(inp, j.next_seq(), j.now)
        if held is None:
            return False
        j.accept(held)
        return True

    def deliver(self, e: ev.WorkflowPaused | ev.WorkflowUnpaused | ev.InputDeferred) -> None:
        """Take a pause, an unpause or a held input from history."""
        if isinstance(e, ev.WorkflowPaused):
            self.paused = e
        elif isinstance(e, ev.WorkflowUnpaused):
            # the held inputs' own events follow in history (replay) or are being
            # made by handle (live)
            self.paused = None
            self._deferred = []
        elif self.paused is None:
            self._j.fail(NonDeterminismError(
                "history holds an input for a run that is not paused", seq=e.seq,
                expected="WorkflowPaused before it", actual="InputDeferred",
            ))
        else:
            try:
                self._deferred.append(from_deferred(e))
            except ValueError as exc:
                self._j.fail(WorkflowTaskError(str(exc)))
