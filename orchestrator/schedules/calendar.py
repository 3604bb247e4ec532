"""Nominal firing times of a schedule spec: cron on a time zone's wall clock,
intervals on UTC, jitter, and the firing workflow id. Pure functions on epoch
milliseconds, so every rule is testable with an injected clock.

Daylight-saving transitions (cron only; intervals run on UTC and never notice):

- A wall time that does not exist (spring forward: 02:30 on the night clocks jump
  from 02:00 to 03:00) fires at the instant it would have been without the jump,
  one hour later on the wall clock (03:30). A cron time inside the gap that lands
  on the same instant as a regular one (02:00 and 03:00 are both 07:00 UTC in New
  York) fires once.
- A wall time that happens twice (fall back: 01:30 on the night clocks go back
  from 02:00 to 01:00) fires once, at its first occurrence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from orchestrator.schedules.spec import ScheduleSpec

__all__ = [
    "cron_problem",
    "firing_workflow_id",
    "jitter_ms",
    "next_after",
    "times_between",
    "to_ms",
    "utc",
]

_CRON_FIELDS = 5
_MAX_STEPS = 5000  # cron candidates tried per call: a repeated hour skips up to 60
_PROBE_FROM = datetime(2000, 1, 1)  # cron has no year: one that ever matches does by 2008


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return round(moment.timestamp() * 1000)


def utc(ms: int) -> datetime:
    """The UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a five-field cron expression we accept, or None."""
    if len(expr.split()) != _CRON_FIELDS:
        return f"cron {expr!r}: expected 5 fields (minute hour day month weekday)"
    if not croniter.is_valid(expr):
        return f"cron {expr!r}: not a valid cron expression"
    try:
        croniter(expr, _PROBE_FROM).get_next(datetime)
    except CroniterBadDateError:
        return f"cron {expr!r}: matches no date (e.g. a day the month never has)"
    return None


def _cron_next(expr: str, zone: ZoneInfo, after_ms: int) -> int | None:
    """The first instant after ``after_ms`` whose wall time in ``zone`` matches ``expr``."""
    wall = datetime.fromtimestamp(after_ms / 1000, zone).replace(tzinfo=None)
    it = croniter(expr, wall)
    for _ in range(_MAX_STEPS):
        try:
            candidate: datetime = it.get_next(datetime)
        except CroniterBadDateError:
            return None  # matches no date (refused at create/update; kept for old specs)
        # fold=0: a repeated wall time is its first occurrence; a missing one gets
        # the offset before the jump, i.e. the instant it would have been
        ms = to_ms(candidate.replace(tzinfo=zone, fold=0))
        if ms > after_ms:
            return ms
    return None


def _interval_next(spec: ScheduleSpec, after_ms: int) -> int:
    assert spec.interval_s is not None
    step, offset = spec.interval_s * 1000, spec.offset_s * 1000
    return offset + ((after_ms - offset) // step + 1) * step


def next_after(spec: ScheduleSpec, after_ms: int) -> int | None:
    """The first nominal time strictly after ``after_ms`` (None: there is none)."""
    if spec.start_at is not None:
        after_ms = max(after_ms, to_ms(spec.start_at) - 1)
    candidates: list[int] = []
    if spec.interval_s is not None:
        candidates.append(_interval_next(spec, after_ms))
    if spec.cron:
        zone = ZoneInfo(spec.time_zone)
        for expr in spec.cron:
            found = _cron_next(expr, zone, after_ms)
            if found is not None:
                candidates.append(found)
    if not candidates:
        return None
    first = min(candidates)
    if spec.end_at is not None and first > to_ms(spec.end_at):
        return None
    return first


def times_between(spec: ScheduleSpec, start_ms: int, end_ms: int) -> Iterator[int]:
    """The nominal times in ``[start_ms, end_ms)``, in order."""
    current = next_after(spec, start_ms - 1)
    while current is not None and current < end_ms:
        yield current
        current = next_after(spec, current)


def jitter_ms(schedule_id: str, nominal_ms: int, jitter_s: float) -> int:
    """The delay of the firing at ``nominal_ms``: the same on every replay and worker,
    spread evenly over ``[0, jitter_s)``."""
    bound = round(jitter_s * 1000)
    if bound <= 0:
        return 0
    digest = hashlib.sha256(f"{schedule_id}/{nominal_ms}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % bound


def firing_workflow_id(schedule_id: str, nominal_ms: int, *, trigger: bool = False) -> str:
    """``<schedule id>-<nominal time, UTC, to the second>``, e.g.
    ``nightly-20261203T020000Z``; a manual trigger ends in ``-trigger``. Never change
    the format: it is what makes a firing's start idempotent."""
    stamp = utc(nominal_ms).strftime("%Y%m%dT%H%M%SZ")
    return f"{schedule_id}-{stamp}" + ("-trigger" if trigger else "")
