"""Per-minute statistics of each workflow type, computed from the visibility projection.

The projection already folds the history topic into one row per run, off the
correctness path; a minute's figures are an aggregate over those rows, so the
statistics need no second stream processor with its own state (docs/architecture.md,
"Windowed statistics"). A minute is counted by when its runs closed (outcomes,
start-to-close percentiles) and by when they started (starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

#: how far back a query may look, in minutes (a day)
MAX_MINUTES = 1440


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """One workflow type in one minute (UTC, the minute's first instant)."""

    workflow_type: str
    minute: datetime
    started: int = 0
    closed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    #: start-to-close of the runs that closed in the minute, milliseconds
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_type": self.workflow_type,
            "minute": self.minute.isoformat(),
            "started": self.started,
            "closed": self.closed,
            "by_status": dict(sorted(self.by_status.items())),
            "start_to_close_ms": {"p50": self.p50_ms, "p90": self.p90_ms, "p99": self.p99_ms},
        }


def last_minutes(minutes: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[since, until) covering the current minute and the ``minutes - 1`` before it."""
    current = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    until = current + timedelta(minutes=1)
    return until - timedelta(minutes=minutes), until


def closed_query(table: str, workflow_type: str | None) -> sql.Composed:
    """Runs closed per type, minute and status, with start-to-close percentiles per
    type and minute (the GROUPING SETS row without status)."""
    return sql.SQL(
        "SELECT workflow_type, date_trunc('minute', close_time) AS minute, status, "
        "count(*) AS n, grouping(status) AS all_statuses, "
        "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP "
        "(ORDER BY extract(epoch FROM close_time - start_time) * 1000) AS pct "
        "FROM {table} WHERE close_time >= %s AND close_time < %s {type} "
        "GROUP BY GROUPING SETS ((workflow_type, minute, status), (workflow_type, minute))"
    ).format(table=sql.Identifier(table), type=_type_filter(workflow_type))


def started_query(table: str, workflow_type: str | None) -> sql.Composed:
    return sql.SQL(
        "SELECT workflow_type, date_trunc('minute', start_time) AS minute, count(*) AS n "
        "FROM {table} WHERE start_time >= %s AND start_time < %s {type} "
        "GROUP BY workflow_type, minute"
    ).format(table=sql.Identifier(table), type=_type_filter(workflow_type))


def _type_filter(workflow_type: str | None) -> sql.Composable:
    return sql.SQL("") if workflow_type is None else sql.SQL("AND workflow_type = %s")


def fold(closed: list[dict[str, Any]], started: list[dict[str, Any]]) -> list[MinuteStats]:
    """The two queries' rows as one list, oldest minute first, then by type."""
    acc: dict[tuple[str, datetime], dict[str, Any]] = {}

    def slot(row: dict[str, Any]) -> dict[str, Any]:
        key = (row["workflow_type"], row["minute"])
        return acc.setdefault(key, {"started": 0, "closed": 0, "by_status": {}, "pct": None})

    for row in closed:
        entry = slot(row)
        if row["all_statuses"]:
            entry["closed"] = int(row["n"])
            entry["pct"] = row["pct"]
        else:
            entry["by_status"][row["status"]] = int(row["n"])
    for row in started:
        slot(row)["started"] = int(row["n"])
    out = []
    for (workflow_type, minute), entry in sorted(acc.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        pct = entry["pct"] or [None, None, None]
        out.append(
            MinuteStats(
                workflow_type,
                minute,
                started=entry["started"],
                closed=entry["closed"],
                by_status=entry["by_status"],
                p50_ms=_ms(pct[0]),
                p90_ms=_ms(pct[1]),
                p99_ms=_ms(pct[2]),
            )
        )
    return out


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
