"""The timers an open run holds, read off its history without running its code.

A shard rebuilt from the history topic has no timer index: it must learn, for every
open run, which timers the run holds. Replaying the run tells it exactly (the
executor's ``pending_timers``), but a replay costs as much as a timer firing, and a
rebuild of a million sleeping runs spent most of its time there. For the common
shape of a waiting run the answer is in the events themselves: every durable timer
the code starts is a ``TimerStarted`` with its due time, and it stops holding it
with a ``TimerFired`` or a ``TimerCancelled``; the execution timeout is in
``WorkflowStarted``.

History always ends at a decision boundary (an input and the decision it caused are
written in one transaction), so the timers started and not yet fired or cancelled
are the ones the code holds. An activity holds timers of its own (timeouts, retry
backoff) only while it runs or waits for a retry: once every activity the run
scheduled has ended (completed, failed, timed out, or given up by the code), they
hold none. Anything else whose timers depend on more than these events (an activity
still under way, children, a cancellation under way, a pause holding inputs, a
closing run) is not folded: the caller replays it.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.engine import events as ev
from orchestrator.engine.commands import StartTimer
from orchestrator.engine.executor import EXECUTION_TIMEOUT_TIMER

#: events that neither start nor stop a timer
_NEUTRAL = (
    ev.SignalReceived,
    ev.UpdateAccepted,
    ev.UpdateCompleted,
    ev.MarkerRecorded,
    ev.SearchAttributesUpserted,
    ev.MemoUpserted,
    ev.ActivityAttemptFailed,
    ev.CompensationStarted,
    ev.CompensationCompleted,
    ev.CompensationFailed,
)
#: events after which an activity holds no timer
_ACTIVITY_ENDED = (
    ev.ActivityCompleted,
    ev.ActivityFailed,
    ev.ActivityTimedOut,
    ev.ActivityCancelRequested,
)
_ACTIVITY_TIMER = "activity/"


def folded_timers(events: Sequence[ev.Event]) -> list[StartTimer] | None:
    """The timers the open run with ``events`` holds, in the order a replay lists
    them; None when only a replay can tell (see the module docstring)."""
    if not events or not isinstance(events[0], ev.WorkflowStarted):
        return None
    started = events[0]
    pending: dict[str, int] = {}
    activities: set[int] = set()  # scheduled and not ended
    for event in events[1:]:
        if isinstance(event, ev.TimerStarted):
            pending[event.timer_id] = event.fire_at
        elif isinstance(event, ev.TimerFired) and event.timer_id.startswith(_ACTIVITY_TIMER):
            continue  # an activity's retry: its own end (or not) decides
        elif isinstance(event, (ev.TimerFired, ev.TimerCancelled)):
            if pending.pop(event.timer_id, None) is None:
                return None  # a history to replay
        elif isinstance(event, ev.ActivityScheduled):
            activities.add(event.activity_seq)
        elif isinstance(event, _ACTIVITY_ENDED):
            activities.discard(event.activity_seq)
        elif not isinstance(event, _NEUTRAL):
            return None
    if activities:
        return None  # an attempt runs or waits for a retry: its timers need the replay
    timers = [StartTimer(timer_id=timer_id, fire_at=at) for timer_id, at in pending.items()]
    if started.execution_deadline is not None:
        deadline = started.execution_deadline
        timers.append(StartTimer(timer_id=EXECUTION_TIMEOUT_TIMER, fire_at=deadline))
    return timers
