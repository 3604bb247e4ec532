"""Inputs held while a run is paused: to an :class:`~orchestrator.engine.events.InputDeferred`
event and back.

A paused run records every input that would move it (a signal, an update request, an
activity attempt's outcome, a fired timer, news of a child, a cancel request) as one
``InputDeferred`` event, so a crash or a failover while paused loses nothing. The unpause
feeds them back to the executor in the order they came; only then do they become the
usual events (``SignalReceived``, ``ActivityCompleted``, ...), judged against the run's
state at that time (a result of an attempt that no longer counts leaves no trace, as
always). Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Final

from orchestrator.engine import events as ev
from orchestrator.engine import inputs as inp

__all__ = ["DEFERRED_KINDS", "from_deferred", "to_deferred"]

DEFERRED_KINDS: Final = (
    "signal",
    "update",
    "activity_completed",
    "activity_failed",
    "timer",
    "cancel",
    "child_started",
    "child_completed",
    "child_failed",
)
"""Every ``InputDeferred.kind``."""


def to_deferred(given: inp.Input, seq: int, time: int) -> ev.InputDeferred | None:  # noqa: PLR0911
    """The event that holds ``given`` while paused; None for inputs a pause does not
    hold (start, terminate, heartbeats, pause and unpause themselves)."""
    match given:
        case inp.SendSignal():
            return ev.InputDeferred(
                seq=seq,
                time=time,
                kind="signal",
                name=given.name,
                args=list(given.args),
                request_id=given.request_id,
            )
        case inp.RequestUpdate():
            return ev.InputDeferred(
                seq=seq,
                time=time,
                kind="update",
                name=given.name,
                update_id=given.update_id,
                args=list(given.args),
            )
        case inp.ActivityTaskCompleted():
            return ev.InputDeferred(
                seq=seq,
                time=time,
                kind="activity_completed",
                seq_of=given.activity_seq,
                attempt=given.attempt,
                result=given.result,
            )
        case inp.ActivityTaskFailed():
            return ev.InputDeferred(
                seq=seq,
                time=time,
                kind="activity_failed",
                seq_of=given.activity_seq,
                attempt=given.attempt,
                failure=given.failure,
            )
        case inp.FireTimer():
            return ev.InputDeferred(seq=seq, time=time, kind="timer", name=given.timer_id)
        case inp.CancelWorkflow():
            return ev.InputDeferred(seq=seq, time=time, kind="cancel", reason=given.reason)
        case inp.ChildStarted():
            return ev.InputDeferred(
                seq=seq,
                time=time,
                kind="child_started",
                seq_of=given.child_seq,
                run_id=given.run_id,
            )
        case inp.ChildCompleted():
            return ev.InputDeferred(
                seq=seq,
                time=time,
                kind="child_completed",
                seq_of=given.child_seq,
                result=given.result,
            )
        case inp.ChildFailed():
            return ev.InputDeferred(
                seq=seq,
                time=time,
                kind="child_failed",
                seq_of=given.child_seq,
                failure=given.failure,
            )
    return None


def from_deferred(e: ev.InputDeferred) -> inp.Input:  # noqa: PLR0911
    """The input an ``InputDeferred`` event holds; ValueError for a malformed one."""
    kind = e.kind
    if kind == "signal":
        return inp.SendSignal(name=e.name, args=list(e.args), request_id=e.request_id)
    if kind == "update":
        return inp.RequestUpdate(update_id=e.update_id, name=e.name, args=list(e.args))
    if kind == "activity_completed" and e.result is not None:
        return inp.ActivityTaskCompleted(activity_seq=e.seq_of, attempt=e.attempt, result=e.result)
    if kind == "activity_failed" and e.failure is not None:
        return inp.ActivityTaskFailed(activity_seq=e.seq_of, attempt=e.attempt, failure=e.failure)
    if kind == "timer":
        return inp.FireTimer(timer_id=e.name)
    if kind == "cancel":
        return inp.CancelWorkflow(reason=e.reason)
    if kind == "child_started":
        return inp.ChildStarted(child_seq=e.seq_of, run_id=e.run_id)
    if kind == "child_completed" and e.result is not None:
        return inp.ChildCompleted(child_seq=e.seq_of, result=e.result)
    if kind == "child_failed" and e.failure is not None:
        return inp.ChildFailed(child_seq=e.seq_of, failure=e.failure)
    raise ValueError(f"InputDeferred event {e.seq} has an unknown or incomplete kind {kind!r}")
