"""Which scheduled nominal times have come, and which of them are too late to run:
the catch-up rule as a pure function of a cursor and the current time."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.schedules.calendar import jitter_ms, next_after, times_between
from orchestrator.schedules.spec import ScheduleSpec

__all__ = ["MAX_COUNTED", "DueScan", "scan_due"]

MAX_COUNTED = 100_000
"""After a very long downtime, at most this many hopeless nominal times are counted."""


@dataclass(frozen=True, slots=True)
class DueScan:
    """The nominal times that have come since ``cursor``, in order."""

    cursor_ms: int
    """The new cursor: everything up to here is dealt with."""
    due: list[tuple[int, bool]] = field(default_factory=list)
    """``(nominal time, missed)``: missed ones came more than the catch-up window late."""
    bulk_missed: int = 0
    """Missed nominal times counted at once (so long ago that even the latest jitter
    could not make them fit the window); not listed in ``due``."""


def scan_due(
    spec: ScheduleSpec, schedule_id: str, cursor_ms: int, now_ms: int, catchup_window_s: float
) -> DueScan:
    """The nominal times after ``cursor_ms`` whose jittered moment is at or before
    ``now_ms``. One is missed when ``now_ms`` is more than ``catchup_window_s`` past
    its jittered moment (the workers were down, or the schedule's shard was moving)."""
    window = round(catchup_window_s * 1000)
    horizon = now_ms - window - round(spec.jitter_s * 1000)
    bulk = 0
    if cursor_ms < horizon - 1:  # nominal times before the horizon are late whatever jitter
        for bulk, _ in enumerate(times_between(spec, cursor_ms + 1, horizon), 1):
            if bulk >= MAX_COUNTED:
                break
        cursor_ms = horizon - 1
    due: list[tuple[int, bool]] = []
    while True:
        nominal = next_after(spec, cursor_ms)
        if nominal is None:
            break
        at = nominal + jitter_ms(schedule_id, nominal, spec.jitter_s)
        if at > now_ms:
            break
        cursor_ms = nominal
        due.append((nominal, now_ms - at > window))
    return DueScan(cursor_ms, due, bulk)
