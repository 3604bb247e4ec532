"""The visibility tables: one row per run, and the projector's consumed offsets.

Table names are parameters (the live projection is ``saga_runs``; a rebuild writes
into another name to compare). Every name is checked as a plain lower-case SQL
identifier and quoted with :class:`psycopg.sql.Identifier`; nothing user-supplied is
ever formatted into SQL text.
"""

from __future__ import annotations

import re
from typing import Any, Final

import psycopg
from psycopg import sql

from orchestrator.visibility import DEFAULT_TABLE

__all__ = [
    "COLUMNS",
    "DEFAULT_TABLE",
    "apply_schema",
    "drop_tables",
    "offsets_table",
    "validate_table",
]


COLUMNS: Final = (
    "workflow_id",
    "run_id",
    "workflow_type",
    "task_queue",
    "status",
    "start_time",
    "close_time",
    "current_step",
    "history_length",
    "search_attributes",
    "memo",
    "error",
    "parked",
    "paused",
    "build_ids",
    "shard",
    "updated_at",
    "workflow_version",
)
"""Columns of the runs table that readers see, in the order
:class:`~orchestrator.visibility.store.RunRow` declares its fields. The table also
holds ``pending_activities`` (activity seq -> type of the scheduled, unfinished
activities), the projector's working state from which ``current_step`` is derived."""

# 63 is PostgreSQL's identifier limit; the longest derived name adds "_offsets" and
# index suffixes of up to 10 characters.
_TABLE_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,48}$")

_DDL: Final = """
CREATE TABLE IF NOT EXISTS {runs} (
    workflow_id        text        NOT NULL,
    run_id             text        NOT NULL,
    workflow_type      text        NOT NULL,
    task_queue         text        NOT NULL,
    status             text        NOT NULL,
    start_time         timestamptz NOT NULL,
    close_time         timestamptz,
    current_step       text,
    history_length     bigint      NOT NULL,
    search_attributes  jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    memo               jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    error              text,
    parked             text,
    paused             text,
    build_ids          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    workflow_version   integer     NOT NULL DEFAULT 1,
    shard              integer     NOT NULL,
    pending_activities jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, run_id)
);
ALTER TABLE {runs} ADD COLUMN IF NOT EXISTS paused text;
ALTER TABLE {runs} ADD COLUMN IF NOT EXISTS build_ids jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE {runs} ADD COLUMN IF NOT EXISTS workflow_version integer NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS {by_build} ON {runs} USING gin (build_ids);
CREATE INDEX IF NOT EXISTS {by_start} ON {runs} (start_time DESC, workflow_id DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS {by_status} ON {runs} (status, start_time DESC);
CREATE INDEX IF NOT EXISTS {by_type} ON {runs} (workflow_type, start_time DESC);
CREATE INDEX IF NOT EXISTS {by_search} ON {runs} USING gin (search_attributes jsonb_path_ops);
CREATE INDEX IF NOT EXISTS {by_close} ON {runs} (close_time) WHERE close_time IS NOT NULL;
CREATE TABLE IF NOT EXISTS {offsets} (
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (topic, partition)
);
"""


def validate_table(name: str) -> str:
    """Return ``name`` if it is a safe table name (``[a-z_][a-z0-9_]*``, at most 49
    characters), else raise ValueError."""
    if not _TABLE_RE.fullmatch(name):
        raise ValueError(
            f"invalid visibility table name {name!r}: use lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most 49 characters"
        )
    return name


def offsets_table(table: str) -> str:
    """The name of the offsets table that goes with runs table ``table``."""
    return f"{validate_table(table)}_offsets"


def _lock_key(table: str) -> sql.Composed:
    return sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
        sql.Literal(f"saga-visibility-ddl:{table}")
    )


def apply_schema(conn: psycopg.Connection[Any], table: str = DEFAULT_TABLE) -> None:
    """Create the runs table ``table``, its indexes and its offsets table (idempotent).

    Serialised by an advisory lock, so projectors and stores starting together do
    not race on ``CREATE ... IF NOT EXISTS``. Commits.
    """
    validate_table(table)
    with conn.transaction():
        conn.execute(_lock_key(table))
        conn.execute(_ddl(table))


def drop_tables(conn: psycopg.Connection[Any], table: str) -> None:
    """Drop runs table ``table`` and its offsets table if they exist. Commits."""
    validate_table(table)
    with conn.transaction():
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
                sql.Identifier(table), sql.Identifier(offsets_table(table))
            )
        )


def _ddl(table: str) -> sql.Composed:
    return sql.SQL(_DDL).format(
        runs=sql.Identifier(table),
        offsets=sql.Identifier(offsets_table(table)),
        by_start=sql.Identifier(f"{table}_by_start"),
        by_status=sql.Identifier(f"{table}_by_status"),
        by_type=sql.Identifier(f"{table}_by_type"),
        by_search=sql.Identifier(f"{table}_by_search"),
        by_close=sql.Identifier(f"{table}_by_close"),
        by_build=sql.Identifier(f"{table}_by_build"),
    )


def ddl(table: str = DEFAULT_TABLE) -> sql.Composed:
    """The DDL statements for ``table`` (for an async connection or to print)."""
    validate_table(table)
    return _ddl(table)


def lock_statement(table: str = DEFAULT_TABLE) -> sql.Composed:
    """The advisory-lock statement that serialises DDL for ``table``."""
    validate_table(table)
    return _lock_key(table)
