"""An operator's reset, planned from a run's history: pure functions, no I/O.

A reset of run R to event N starts a new run of the same workflow id whose history
begins with R's events ``1..N``, replayed by the current code; the decisions R made
after N are made again. Its ``WorkflowStarted`` names the new run and, in ``reset``
(:class:`~orchestrator.engine.events.ResetOrigin`), R, N, who reset it and why. The
signals R received after N are delivered again unless the operator excludes them. The shard
(:meth:`~orchestrator.worker.shard.engine_shard.EngineShard`) terminates R first if it
is still open. See docs/operations.md and docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.engine import events as ev
from orchestrator.engine import inputs
from orchestrator.engine.deferral import from_deferred

__all__ = [
    "ResetPlan",
    "ResetRefusedError",
    "first_decision_of",
    "last_decision_point",
    "plan_reset",
]


class ResetRefusedError(ValueError):
    """The reset cannot be done as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class ResetPlan:
    """What the new run starts with."""

    to_seq: int
    prefix: list[ev.Event]
    """Events ``1..to_seq`` of the old run, the first naming the new run and the reset."""
    signals: list[inputs.SendSignal]
    """Signals the old run received after the reset point, to deliver again."""
    scheduled: frozenset[int]
    """Activity seqs scheduled up to the point (those still running at it must be
    dispatched again; later ones the new run schedules itself)."""


def last_decision_point(events: Sequence[ev.Event]) -> int:
    """The seq of the last input event that the code answered with decisions: a reset
    there makes the run's latest decisions again (with the code deployed now)."""
    point = 1
    for before, after in itertools.pairwise(events):
        if not isinstance(before, ev.DecisionEvent) and isinstance(after, ev.DecisionEvent):
            point = before.seq
    return point


def first_decision_of(events: Sequence[ev.Event], build_id: str) -> int:
    """The seq of the first decision a worker of ``build_id`` made in ``events``."""
    for e in events:
        if isinstance(e, ev.DecisionEvent) and e.build_id == build_id:
            return e.seq
    raise ResetRefusedError(f"build {build_id!r} made no decision in this run")


def plan_reset(
    events: Sequence[ev.Event],
    *,
    old_run_id: str,
    new_run_id: str,
    event_seq: int | None,
    exclude_signals: bool,
    reason: str,
    operator: str,
    before_build: str | None = None,
) -> ResetPlan:
    """The new run's start; :class:`ResetRefusedError` when the point is not one to reset to.

    The point: ``event_seq``; else, with ``before_build``, the event before the first
    decision a worker of that build made; else the last decision point."""
    if not events or not isinstance(events[0], ev.WorkflowStarted):
        raise ResetRefusedError("the run has no history to reset (retention may have ended)")
    if event_seq is not None:
        to_seq = event_seq
    elif before_build is not None:
        to_seq = first_decision_of(events, before_build) - 1
    else:
        to_seq = last_decision_point(events)
    closing = next((e.seq for e in events if isinstance(e, ev.TERMINAL_EVENTS)), None)
    last = closing - 1 if closing is not None else events[-1].seq
    if not 1 <= to_seq <= last:
        raise ResetRefusedError(
            f"cannot reset to event {to_seq}: the run's events to reset to are 1..{last}"
            + (f" (event {closing} closed it)" if closing is not None else "")
        )
    prefix = list(events[:to_seq])
    _refuse_children_in_flight(prefix)
    _refuse_inside_a_pause(prefix)
    started = prefix[0]
    assert isinstance(started, ev.WorkflowStarted)
    origin = ev.ResetOrigin(
        from_run_id=old_run_id,
        to_seq=to_seq,
        reason=reason,
        operator=operator,
        activity_keys=_activity_keys(started, prefix, old_run_id),
    )
    prefix[0] = dataclasses.replace(started, run_id=new_run_id, reset=origin)
    signals = [] if exclude_signals else _signals_after(events[to_seq:])
    scheduled = frozenset(int(seq) for seq in origin.activity_keys)
    return ResetPlan(to_seq, prefix, signals, scheduled)


def _activity_keys(
    started: ev.WorkflowStarted, prefix: Sequence[ev.Event], old_run_id: str
) -> dict[str, str]:
    """For each activity scheduled in the prefix, the run id of its idempotency key:
    the one the old run used (itself inherited when the old run was a reset's)."""
    inherited = started.reset.activity_keys if started.reset is not None else {}
    return {
        str(e.activity_seq): inherited.get(str(e.activity_seq), old_run_id)
        for e in prefix
        if isinstance(e, ev.ActivityScheduled)
    }


def _refuse_children_in_flight(prefix: Sequence[ev.Event]) -> None:
    """A child started before the point and not finished by it reports to the old
    run, which the new run would never hear of: refused rather than left hanging."""
    open_children = {e.child_seq for e in prefix if isinstance(e, ev.ChildWorkflowInitiated)}
    for e in prefix:
        if isinstance(e, ev.ChildWorkflowCompleted | ev.ChildWorkflowFailed):
            open_children.discard(e.child_seq)
    if open_children:
        raise ResetRefusedError(
            f"child workflows {sorted(open_children)} were running at that point; "
            "reset to a point before they started or after they finished"
        )


def _refuse_inside_a_pause(prefix: Sequence[ev.Event]) -> None:
    paused = False
    for e in prefix:
        if isinstance(e, ev.WorkflowPaused | ev.WorkflowUnpaused):
            paused = isinstance(e, ev.WorkflowPaused)
    if paused:
        raise ResetRefusedError(
            "the run was paused at that point; reset to a point outside the pause"
        )


def _signals_after(tail: Sequence[ev.Event]) -> list[inputs.SendSignal]:
    """The signals of ``tail`` in order: received, or held by a pause that had not
    ended (a pause's held signals are received again after its unpause)."""
    out: list[inputs.SendSignal] = []
    held: list[inputs.SendSignal] = []
    for e in tail:
        if isinstance(e, ev.SignalReceived):
            out.append(
                inputs.SendSignal(name=e.signal_name, args=list(e.args), request_id=e.request_id)
            )
        elif isinstance(e, ev.InputDeferred) and e.kind == "signal":
            signal = from_deferred(e)
            assert isinstance(signal, inputs.SendSignal)
            held.append(signal)
        elif isinstance(e, ev.WorkflowUnpaused):
            held = []
    return out + held
