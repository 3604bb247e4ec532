"""Compare two projections, and check the live one against a rebuild from the log.

:func:`compare` diffs two runs tables row by row (every column except
``updated_at``). :func:`check` answers "does the live projection equal a rebuild
from the raw log?" even while the projector runs: it copies the live table and its
offsets in one snapshot, rebuilds up to exactly those offsets, and compares.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from orchestrator.converter import DataConverter
from orchestrator.log.topics import TopicLayout
from orchestrator.visibility.rebuild import RebuildStats, history_ends, rebuild
from orchestrator.visibility.schema import (
    COLUMNS,
    DEFAULT_TABLE,
    apply_schema,
    drop_tables,
    validate_table,
)
from orchestrator.visibility.sink import RunsSink

__all__ = ["CheckResult", "Difference", "check", "compare"]

log = logging.getLogger(__name__)

COMPARED: Final = (*(c for c in COLUMNS if c != "updated_at"), "pending_activities")
"""Columns compared (``updated_at`` differs by nature)."""


@dataclass(frozen=True, slots=True)
class Difference:
    """One run that differs: ``column`` is "(missing)" when a table lacks the run."""

    workflow_id: str
    run_id: str
    column: str
    left: Any
    right: Any

    def __str__(self) -> str:
        return f"{self.workflow_id}/{self.run_id} {self.column}: {self.left!r} != {self.right!r}"


def compare(
    conn: psycopg.Connection[Any], left: str, right: str, *, limit: int = 100
) -> list[Difference]:
    """Runs that differ between tables ``left`` and ``right`` (at most ``limit``; one
    entry per differing column). Empty when the projections are equal."""
    validate_table(left)
    validate_table(right)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in COMPARED)
    query = sql.SQL(
        "SELECT coalesce(a.workflow_id, b.workflow_id) AS wf, "
        "coalesce(a.run_id, b.run_id) AS run, "
        "to_jsonb(a) AS a, to_jsonb(b) AS b "
        "FROM (SELECT {cols} FROM {left}) a FULL JOIN (SELECT {cols} FROM {right}) b "
        "ON a.workflow_id = b.workflow_id AND a.run_id = b.run_id "
        "WHERE a IS NULL OR b IS NULL OR to_jsonb(a) <> to_jsonb(b) "
        "ORDER BY 1, 2 LIMIT %s"
    ).format(cols=cols, left=sql.Identifier(left), right=sql.Identifier(right))
    found: list[Difference] = []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, [limit])
        for r in cur.fetchall():
            a, b = r["a"], r["b"]
            if a is None or b is None:
                found.append(
                    Difference(r["wf"], r["run"], "(missing)", a is not None, b is not None)
                )
                continue
            found += [
                Difference(r["wf"], r["run"], c, a.get(c), b.get(c))
                for c in COMPARED
                if a.get(c) != b.get(c)
            ]
    return found[:limit]


@dataclass(slots=True)
class CheckResult:
    """The outcome of :func:`check`."""

    differences: list[Difference]
    live_rows: int
    live_offsets: dict[int, int]
    topic_ends: dict[int, int]
    rebuild: RebuildStats
    behind: dict[int, int] = field(default_factory=dict)
    """Partitions where the live projection has not reached the topic's end: records left."""

    @property
    def equal(self) -> bool:
        return not self.differences


def _snapshot_copy(
    conn: psycopg.Connection[Any], live: str, copy: str, topic: str
) -> dict[int, int]:
    """Copy ``live`` into ``copy`` and return the live offsets, from one snapshot."""
    drop_tables(conn, copy)
    apply_schema(conn, copy)
    names = sql.SQL(", ").join(sql.Identifier(c) for c in (*COLUMNS, "pending_activities"))
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(
            sql.SQL("INSERT INTO {copy} ({names}) SELECT {names} FROM {live}").format(
                copy=sql.Identifier(copy), names=names, live=sql.Identifier(live)
            )
        )
        return RunsSink(live).read_offsets(conn, topic)


def check(
    dsn: str,
    kafka_config: Mapping[str, Any],
    layout: TopicLayout,
    *,
    table: str = DEFAULT_TABLE,
    scratch: str | None = None,
    converter: DataConverter | None = None,
    keep: bool = False,
    timeout_s: float = 600.0,
) -> CheckResult:
    """Compare live table ``table`` with a rebuild of the same log prefix.

    Uses scratch tables ``<scratch>_live`` and ``<scratch>_rebuilt`` (default scratch:
    ``<table>_check``), dropped afterwards unless ``keep``.
    """
    validate_table(table)
    scratch = validate_table(scratch or f"{table}_check")
    copy, rebuilt = validate_table(f"{scratch}_live"), validate_table(f"{scratch}_rebuilt")
    if table in (copy, rebuilt):
        raise ValueError(f"scratch tables must differ from {table}")
    ends = history_ends(kafka_config, layout.history)
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_schema(conn, table)
        offsets = _snapshot_copy(conn, table, copy, layout.history)
    stats = rebuild(
        dsn,
        kafka_config,
        layout,
        into=rebuilt,
        until={p: max(o, 0) for p, o in offsets.items()},
        converter=converter,
        timeout_s=timeout_s,
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        differences = compare(conn, copy, rebuilt)
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(copy))
        ).fetchone()
        if not keep:
            drop_tables(conn, copy)
            drop_tables(conn, rebuilt)
    behind = {p: end - offsets.get(p, 0) for p, end in ends.items() if offsets.get(p, 0) < end}
    result = CheckResult(
        differences=differences,
        live_rows=int(row[0]) if row else 0,
        live_offsets=offsets,
        topic_ends=ends,
        rebuild=stats,
        behind=behind,
    )
    log.info(
        "visibility check of %s: %d rows, %d differences, behind %s",
        table,
        result.live_rows,
        len(differences),
        behind or "nothing",
    )
    return result
