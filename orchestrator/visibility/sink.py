"""The projector's PostgreSQL side: load rows, write folded rows, read and store offsets.

Every function runs in the caller's transaction: the projector puts a batch's row
changes and its next offsets in one transaction, which is what makes the projection
exactly-once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from orchestrator.visibility.fold import RunKey, RunState
from orchestrator.visibility.schema import COLUMNS, offsets_table, validate_table

__all__ = ["RunsSink", "from_ms", "to_ms"]

#: what the projector writes: the readers' columns (``updated_at`` is set by the
#: database) plus the internal ``pending_activities`` that ``current_step`` comes from
_WRITE_COLUMNS: Final = (*(c for c in COLUMNS if c != "updated_at"), "pending_activities")
_KEY: Final = ("workflow_id", "run_id")


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (exact)."""
    return _EPOCH + timedelta(milliseconds=ms)


def to_ms(value: datetime) -> int:
    """An aware datetime as epoch milliseconds (exact for values made by :func:`from_ms`)."""
    return (value - _EPOCH) // _MS


class RunsSink:
    """Reads and writes runs table ``table`` and its offsets table."""

    def __init__(self, table: str) -> None:
        self.table = validate_table(table)
        self.offsets = offsets_table(table)
        names = sql.SQL(", ").join(map(sql.Identifier, _WRITE_COLUMNS))
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in _WRITE_COLUMNS
            if c not in _KEY
        )
        self._upsert = sql.SQL(
            "INSERT INTO {t} ({names}) VALUES ({values}) ON CONFLICT (workflow_id, run_id) "
            "DO UPDATE SET {updates}, updated_at = clock_timestamp()"
        ).format(
            t=sql.Identifier(table),
            names=names,
            values=sql.SQL(", ").join(sql.Placeholder() * len(_WRITE_COLUMNS)),
            updates=updates,
        )
        self._load = sql.SQL("SELECT {names} FROM {t} WHERE workflow_id = ANY(%s)").format(
            names=names, t=sql.Identifier(table)
        )
        self._delete = sql.SQL("DELETE FROM {t} WHERE workflow_id = %s AND run_id = %s").format(
            t=sql.Identifier(table)
        )

    def load(
        self, conn: psycopg.Connection[Any], workflow_ids: Iterable[str]
    ) -> dict[RunKey, RunState]:
        """Every row of these workflow ids, as fold states."""
        ids = sorted(set(workflow_ids))
        if not ids:
            return {}
        cur = conn.cursor(row_factory=dict_row)
        cur.execute(self._load, [ids])
        found = {}
        for r in cur.fetchall():
            state = RunState(
                workflow_id=r["workflow_id"],
                run_id=r["run_id"],
                workflow_type=r["workflow_type"],
                task_queue=r["task_queue"],
                status=r["status"],
                start_time=to_ms(r["start_time"]),
                shard=r["shard"],
                history_length=r["history_length"],
                close_time=None if r["close_time"] is None else to_ms(r["close_time"]),
                search_attributes=r["search_attributes"],
                memo=r["memo"],
                error=r["error"],
                parked=r["parked"],
                paused=r["paused"],
                build_ids=list(r["build_ids"]),
                workflow_version=r["workflow_version"],
                pending={int(k): v for k, v in r["pending_activities"].items()},
            )
            found[state.key] = state
        return found

    def write(
        self,
        conn: psycopg.Connection[Any],
        upserts: Iterable[RunState],
        deletes: Iterable[RunKey],
    ) -> tuple[int, int]:
        """Upsert and delete rows; returns (upserted, deleted) counts."""
        rows = [_params(s) for s in upserts]
        keys = [list(k) for k in deletes]
        with conn.cursor() as cur:
            if rows:
                cur.executemany(self._upsert, rows)
            if keys:
                cur.executemany(self._delete, keys)
        return len(rows), len(keys)

    def read_offsets(
        self, conn: psycopg.Connection[Any], topic: str, *, lock: bool = False
    ) -> dict[int, int]:
        """Next offset to consume per partition of ``topic`` (partitions never stored are
        absent). With ``lock``, the rows stay locked until the transaction ends."""
        query = sql.SQL("SELECT partition, next_offset FROM {} WHERE topic = %s{}").format(
            sql.Identifier(self.offsets), sql.SQL(" FOR UPDATE") if lock else sql.SQL("")
        )
        return {int(p): int(o) for p, o in conn.execute(query, [topic]).fetchall()}

    def write_offsets(
        self, conn: psycopg.Connection[Any], topic: str, offsets: Mapping[int, int]
    ) -> None:
        """Store the next offset to consume for each partition."""
        if not offsets:
            return
        query = sql.SQL(
            "INSERT INTO {} (topic, partition, next_offset) VALUES (%s, %s, %s) "
            "ON CONFLICT (topic, partition) DO UPDATE "
            "SET next_offset = EXCLUDED.next_offset, updated_at = clock_timestamp()"
        ).format(sql.Identifier(self.offsets))
        with conn.cursor() as cur:
            cur.executemany(query, [(topic, p, o) for p, o in sorted(offsets.items())])


def _params(s: RunState) -> list[Any]:
    return [
        s.workflow_id,
        s.run_id,
        s.workflow_type,
        s.task_queue,
        s.status,
        from_ms(s.start_time),
        None if s.close_time is None else from_ms(s.close_time),
        s.current_step,
        s.history_length,
        Jsonb(s.search_attributes),
        Jsonb(s.memo),
        s.error,
        s.parked,
        s.paused,
        Jsonb(s.build_ids),
        s.shard,
        s.workflow_version,
        Jsonb({str(k): v for k, v in s.pending.items()}),
    ]
