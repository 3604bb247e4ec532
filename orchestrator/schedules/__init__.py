"""Schedules: sagas that start on a calendar (docs/schedules.md).

A schedule is a run of the built-in ``saga.schedule`` workflow; these are its
records, its time rules and the workflow itself. Clients create and change
schedules through :class:`orchestrator.client.Client` (``create_schedule``,
``schedule_handle``).
"""

from orchestrator.schedules.spec import (
    FiringKind,
    OverlapPolicy,
    RecentAction,
    ScheduleAction,
    ScheduleChange,
    ScheduleDescription,
    SchedulePolicy,
    ScheduleSpec,
)

__all__ = [
    "FiringKind",
    "OverlapPolicy",
    "RecentAction",
    "ScheduleAction",
    "ScheduleChange",
    "ScheduleDescription",
    "SchedulePolicy",
    "ScheduleSpec",
]
