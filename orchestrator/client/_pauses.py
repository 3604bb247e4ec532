"""Pausing an activity type on a task queue, for both clients (no I/O here).

A pause is a record on ``<prefix>.activity-pauses`` (compacted, key
``{task_queue}/{activity_type}``); the queue's activity workers hold the type's tasks
while it is paused, and start them on unpause (docs/operations.md).
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterable
from typing import Any

from orchestrator.client._common import PendingActivityInfo
from orchestrator.serde.records import ActivityPause

__all__ = ["fold_pauses", "pause_record", "waiting_on_paused"]

_MAX_REASON_CHARS = 2000


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return ""


def pause_record(
    task_queue: str,
    activity_type: str,
    *,
    paused: bool,
    reason: str = "",
    operator: str | None = None,
) -> ActivityPause:
    """The record that pauses (or unpauses) ``activity_type`` on ``task_queue``."""
    if not task_queue or "/" in task_queue:
        raise ValueError(f"invalid task queue name {task_queue!r}")
    if not activity_type:
        raise ValueError("activity type must not be empty")
    if len(reason) > _MAX_REASON_CHARS:
        raise ValueError(f"reason is longer than {_MAX_REASON_CHARS} characters")
    return ActivityPause(
        task_queue=task_queue,
        activity_type=activity_type,
        paused=paused,
        reason=reason,
        operator=_operator() if operator is None else operator,
        time=int(time.time() * 1000),
    )


def fold_pauses(records: Iterable[ActivityPause], task_queue: str | None) -> list[ActivityPause]:
    """The types paused after ``records`` (in log order), of one queue or all."""
    latest: dict[tuple[str, str], ActivityPause] = {}
    for record in records:
        latest[(record.task_queue, record.activity_type)] = record
    return sorted(
        (r for r in latest.values()
         if r.paused and (task_queue is None or r.task_queue == task_queue)),
        key=lambda r: (r.task_queue, r.activity_type),
    )


def waiting_on_paused(
    pending: Iterable[PendingActivityInfo], paused: Iterable[ActivityPause]
) -> list[dict[str, Any]]:
    """The unfinished activities of a run (``pending``, from its describe) whose type is
    paused on their queue, with the pause's reason, operator and time: what ``saga
    describe`` shows as waiting on a paused type."""
    by_key = {(p.task_queue, p.activity_type): p for p in paused}
    out: list[dict[str, Any]] = []
    for activity in pending:
        pause = by_key.get((activity.task_queue, activity.activity_type))
        if pause is not None:
            out.append({
                "activity_seq": activity.activity_seq, "activity_type": activity.activity_type,
                "task_queue": activity.task_queue, "paused_since": pause.time,
                "reason": pause.reason, "operator": pause.operator,
            })
    return out
