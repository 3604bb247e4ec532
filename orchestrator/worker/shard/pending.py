"""The activities of an open run that are scheduled and not finished, for ``__describe``.

Read off the run's events, with no replay (a describe must stay cheap and must not
run workflow code): an ``ActivityScheduled`` opens one, an ``ActivityAttemptFailed``
moves it to its next attempt, and a completion, a failure, a timeout or a cancel
request closes it. Each is marked ``paused`` when the operator has paused its type
on its task queue, as the engine worker's view of ``<prefix>.activity-pauses`` says:
the activity workers then hold its attempt unstarted.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.engine import events as ev
from orchestrator.engine.activities import PausedTypes
from orchestrator.serde.history_page import PendingActivity

__all__ = ["MAX_PENDING", "pending_activities"]

MAX_PENDING = 1000
"""At most this many are listed (the lowest ``activity_seq`` first): a describe answer
must fit in one reply record, and a run fanned out to many thousands of activities
would not."""

_ENDED = (ev.ActivityCompleted, ev.ActivityFailed, ev.ActivityTimedOut,
          ev.ActivityCancelRequested)


def pending_activities(
    events: Iterable[ev.Event], paused: PausedTypes | None, limit: int = MAX_PENDING
) -> list[PendingActivity]:
    """The run's unfinished activities (by ``activity_seq``, at most ``limit``), marked
    when held by a pause."""
    scheduled: dict[int, ev.ActivityScheduled] = {}
    attempt: dict[int, int] = {}
    for event in events:
        if isinstance(event, ev.ActivityScheduled):
            scheduled[event.activity_seq] = event
            attempt[event.activity_seq] = 1
        elif isinstance(event, ev.ActivityAttemptFailed):
            attempt[event.activity_seq] = event.attempt + 1
        elif isinstance(event, _ENDED):
            scheduled.pop(event.activity_seq, None)
    return [
        PendingActivity(
            activity_seq=seq, activity_type=s.activity_type, task_queue=s.task_queue,
            attempt=attempt[seq],
            paused=paused is not None and paused.is_paused(s.task_queue, s.activity_type),
        )
        for seq, s in sorted(scheduled.items())[:limit]
    ]
