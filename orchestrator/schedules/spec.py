"""The records of a schedule: when it fires, what it starts, and how it behaves.

All of them are plain frozen dataclasses that the default payload converter encodes
as JSON: they travel as the input, update arguments and query answers of the
built-in ``saga.schedule`` workflow (docs/schedules.md).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MAX_BACKFILL_FIRINGS",
    "RECENT_ACTIONS",
    "SCHEDULE_ID_RE",
    "SCHEDULE_WORKFLOW",
    "FiringKind",
    "OverlapPolicy",
    "RecentAction",
    "ScheduleAction",
    "ScheduleChange",
    "ScheduleDescription",
    "SchedulePolicy",
    "ScheduleSpec",
    "check_schedule_id",
    "schedule_workflow_id",
]

SCHEDULE_WORKFLOW = "saga.schedule"
"""The workflow type of every schedule."""

RECENT_ACTIONS = 10
"""How many recent actions a schedule keeps for ``describe``."""

MAX_BACKFILL_FIRINGS = 1000
"""A backfill that would start more firings than this is refused."""

SCHEDULE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
"""Schedule ids: letters, digits, ``.``, ``_``, ``-`` (they become part of workflow ids)."""


class OverlapPolicy(enum.StrEnum):
    """What a firing does while an earlier firing of the same schedule still runs."""

    SKIP = "skip"
    """Do not start it (counted as skipped)."""
    BUFFER_ONE = "buffer_one"
    """Start it when the running one closes; at most one waits, later ones are skipped."""
    BUFFER_ALL = "buffer_all"
    """Start each in turn as the previous one closes."""
    CANCEL_OTHER = "cancel_other"
    """Ask the running one to cancel (its compensations run) and start this one once it
    has closed (buffered as with ``buffer_one``)."""
    TERMINATE_OTHER = "terminate_other"
    """Terminate the running one and start this one at once."""
    ALLOW_ALL = "allow_all"
    """Start it at once, whatever runs."""


class FiringKind(enum.StrEnum):
    """Why a firing happened."""

    SCHEDULED = "scheduled"
    TRIGGER = "trigger"
    BACKFILL = "backfill"


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """When a schedule fires: cron expressions and/or a fixed interval.

    ``cron``: standard five-field expressions (minute hour day-of-month month
    day-of-week), evaluated on the wall clock of ``time_zone``. ``interval_s``: every
    that many seconds, at ``epoch + offset_s + k * interval_s`` (UTC, unaffected by
    the time zone). The nominal times are the union of both. ``jitter_s``: each
    firing starts up to that many seconds after its nominal time (a fixed,
    pseudo-random delay per nominal time). ``start_at`` / ``end_at`` bound the
    nominal times (inclusive).
    """

    cron: list[str] = field(default_factory=list)
    interval_s: int | None = None
    offset_s: int = 0
    time_zone: str = "UTC"
    jitter_s: float = 0.0
    start_at: datetime | None = None
    end_at: datetime | None = None

    def problems(self) -> list[str]:
        """Everything wrong with this spec (empty when valid)."""
        from orchestrator.schedules.calendar import cron_problem

        found: list[str] = []
        if not self.cron and self.interval_s is None:
            found.append("give at least one cron expression or an interval")
        for expr in self.cron:
            problem = cron_problem(expr)
            if problem is not None:
                found.append(problem)
        if self.interval_s is not None and self.interval_s < 1:
            found.append(f"interval_s must be a whole number >= 1, not {self.interval_s}")
        if self.interval_s is not None and not 0 <= self.offset_s < self.interval_s:
            found.append(f"offset_s must be in [0, interval_s), not {self.offset_s}")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            found.append(f"unknown time zone {self.time_zone!r}")
        if self.jitter_s < 0:
            found.append("jitter_s must not be negative")
        for name, value in (("start_at", self.start_at), ("end_at", self.end_at)):
            if value is not None and value.tzinfo is None:
                found.append(f"{name} must carry a time zone")
        return found


@dataclass(frozen=True, slots=True)
class ScheduleAction:
    """What each firing starts: a workflow of ``workflow_type`` on ``task_queue`` with
    ``args`` (JSON values, decoded by the workflow's own type hints)."""

    workflow_type: str
    task_queue: str
    args: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    """How firings behave: overlap, and how late a missed firing may still run."""

    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window_s: float = 300.0
    """A firing found due more than this many seconds late (every worker was down) is
    not started; it is counted as missed."""

    def problems(self) -> list[str]:
        """Everything wrong with this policy (empty when valid)."""
        return [] if self.catchup_window_s >= 0 else ["catchup_window_s must not be negative"]


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """An update: the parts given replace the schedule's; None keeps them."""

    spec: ScheduleSpec | None = None
    action: ScheduleAction | None = None
    policy: SchedulePolicy | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class RecentAction:
    """One firing and what became of it."""

    nominal_time: datetime
    kind: FiringKind
    workflow_id: str
    outcome: str
    """``running``, ``completed``, ``failed``, ``cancelled``, ``terminated``,
    ``skipped`` (overlap), ``missed`` (past the catch-up window) or ``buffered``."""
    started_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScheduleDescription:
    """A schedule as its workflow has it now (the answer of ``describe``)."""

    schedule_id: str
    spec: ScheduleSpec
    action: ScheduleAction
    policy: SchedulePolicy
    paused: bool
    note: str
    created_at: datetime
    started: int
    """Firings started (scheduled, triggered and backfilled)."""
    skipped: int
    """Firings not started because of the overlap policy."""
    missed: int
    """Firings found due past the catch-up window."""
    running: list[str]
    """Workflow ids of the firings that run now."""
    buffered: list[datetime]
    """Nominal times of firings waiting for a running one to close."""
    recent: list[RecentAction]
    next_times: list[datetime]
    """The next nominal times (jitter not included; empty while paused)."""
    handled_until: datetime
    """Every scheduled nominal time up to here is dealt with: started, skipped,
    buffered, missed, or passed while paused."""


def check_schedule_id(schedule_id: str) -> str:
    """``schedule_id`` if valid, else ValueError."""
    if not SCHEDULE_ID_RE.match(schedule_id):
        raise ValueError(
            f"schedule id {schedule_id!r}: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return schedule_id


def schedule_workflow_id(schedule_id: str) -> str:
    """The workflow id of a schedule's runs: ``schedule:<schedule id>``."""
    return f"schedule:{schedule_id}"
