"""The read side of visibility: list, search, describe and count runs in PostgreSQL.

Rows are written by the projector (:mod:`orchestrator.visibility.projector`) and are
eventually consistent with the history topic (typically a few hundred ms behind).
A running execution's live state comes from its shard owner (queries), not from here.

Listing is newest first by ``start_time`` with keyset pagination: each page returns an
opaque cursor for the next one (``None`` on the last page).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from orchestrator.visibility import windows
from orchestrator.visibility.schema import COLUMNS, DEFAULT_TABLE, ddl, lock_statement
from orchestrator.visibility.schema import validate_table as _validate_table
from orchestrator.visibility.windows import MinuteStats

__all__ = ["MAX_LIMIT", "RunRow", "VisibilityStore", "decode_cursor", "encode_cursor"]

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 1000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as the visibility projection holds it.

    ``status`` is the engine's status name (RUNNING, COMPENSATING, COMPLETED, FAILED,
    CANCELLED, TERMINATED, TIMED_OUT, COMPENSATION_FAILED, CONTINUED_AS_NEW);
    ``history_length`` is the seq of the last applied event; ``search_attributes``
    and ``memo`` hold JSON-decoded values (None where a value could not be decoded,
    e.g. encrypted without the key); ``error`` is the failure message of a failed run;
    ``parked`` says why a run cannot progress (non-determinism); ``paused``, while an
    operator has paused the run, who did and why (``"<operator>: <reason>"``);
    ``build_ids``: the build ids of the workers that made the run's decisions, in the
    order they first did; ``shard`` is the history partition; ``workflow_version``:
    the version of the type's definition the run started on and is pinned to (1 for
    runs recorded before versions existed).
    """

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time: datetime
    close_time: datetime | None
    current_step: str | None
    history_length: int
    search_attributes: dict[str, Any]
    memo: dict[str, Any]
    error: str | None
    parked: str | None
    paused: str | None
    build_ids: list[str]
    shard: int
    updated_at: datetime
    workflow_version: int = 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict: times as ISO 8601 strings with offset."""
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "workflow_type": self.workflow_type,
            "task_queue": self.task_queue,
            "status": self.status,
            "start_time": _iso(self.start_time),
            "close_time": _iso(self.close_time),
            "current_step": self.current_step,
            "history_length": self.history_length,
            "search_attributes": self.search_attributes,
            "memo": self.memo,
            "error": self.error,
            "parked": self.parked,
            "paused": self.paused,
            "build_ids": self.build_ids,
            "shard": self.shard,
            "updated_at": _iso(self.updated_at),
            "workflow_version": self.workflow_version,
        }

    @classmethod
    def from_db(cls, row: dict[str, Any]) -> RunRow:
        """Build from a ``dict_row`` of the runs table."""
        return cls(**{name: row[name] for name in COLUMNS})


def encode_cursor(row: RunRow) -> str:
    """The opaque cursor that continues a listing after ``row``."""
    delta = row.start_time - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raw = json.dumps([micros, row.workflow_id, row.run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, str]:
    """(start_time, workflow_id, run_id) of a cursor; ValueError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, workflow_id, run_id = json.loads(raw)
        valid = isinstance(micros, int) and isinstance(workflow_id, str) and isinstance(run_id, str)
        if valid:  # a forged number may lie outside the datetime range
            return _EPOCH + timedelta(microseconds=micros), workflow_id, run_id
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ValueError("invalid cursor") from exc
    raise ValueError("invalid cursor")


class VisibilityStore:
    """Async read access to the runs table (psycopg 3 connection pool).

    ``open()`` creates the tables if they are missing (idempotent; skipped with a
    warning when the role may not create them), so reading before the projector
    ever ran returns empty results instead of failing.
    """

    def __init__(self, dsn: str, *, table: str = DEFAULT_TABLE) -> None:
        self.table = _validate_table(table)
        self._dsn = dsn
        self._pool: AsyncConnectionPool | None = None

    async def open(self, timeout_s: float = 10.0) -> None:
        """Connect (a small pool) and make sure the tables exist."""
        pool = AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"autocommit": True},
            name=f"visibility-{self.table}",
        )
        try:
            await pool.open(wait=True, timeout=timeout_s)
            try:
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute(lock_statement(self.table))
                    await conn.execute(ddl(self.table))
            except psycopg.errors.InsufficientPrivilege:
                log.warning("visibility: no privilege to create %s; reading as is", self.table)
        except BaseException:
            # The caller gets no store to close (``async with`` skips __aexit__).
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _require_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("VisibilityStore is not open: call open() first")
        return self._pool

    async def _fetch(self, query: sql.Composed, params: list[Any]) -> list[dict[str, Any]]:
        async with self._require_pool().connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return await cur.fetchall()

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow_type: str | None = None,
        search: dict[str, Any] | None = None,
        build_id: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        parked: bool | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[RunRow], str | None]:
        """Runs newest first (by start time), filtered, and the cursor of the next page.

        ``status`` is matched case-insensitively against the status names;
        ``search`` matches runs whose search attributes contain every given key with
        the given JSON value (JSONB containment); ``build_id`` matches runs that a
        worker of that build made decisions for; ``started_after`` (inclusive) and
        ``started_before`` (exclusive) bound the start time; ``parked`` keeps only parked
        runs (True) or only the others (False). ``limit`` is 1..1000.
        ``after`` is a cursor from a previous call; a malformed cursor raises ValueError.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        where, params = _filters(
            status=status, workflow_type=workflow_type, search=search, build_id=build_id,
            started_after=started_after, started_before=started_before, parked=parked,
        )
        if after is not None:
            start, workflow_id, run_id = decode_cursor(after)
            where.append(sql.SQL("(start_time, workflow_id, run_id) < (%s, %s, %s)"))
            params.extend([start, workflow_id, run_id])
        query = sql.SQL(
            "SELECT {cols} FROM {table} {where} "
            "ORDER BY start_time DESC, workflow_id DESC, run_id DESC LIMIT %s"
        ).format(
            cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
            table=sql.Identifier(self.table),
            where=sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        )
        params.append(limit + 1)
        rows = [RunRow.from_db(r) for r in await self._fetch(query, params)]
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, encode_cursor(rows[-1])
        return rows, None

    async def count_runs(
        self,
        *,
        status: str | None = None,
        workflow_type: str | None = None,
        search: dict[str, Any] | None = None,
        build_id: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        parked: bool | None = None,
    ) -> int:
        """How many runs :meth:`list_runs` would list with these filters (all pages)."""
        where, params = _filters(
            status=status, workflow_type=workflow_type, search=search, build_id=build_id,
            started_after=started_after, started_before=started_before, parked=parked,
        )
        query = sql.SQL("SELECT count(*) AS n FROM {table} {where}").format(
            table=sql.Identifier(self.table),
            where=sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        )
        rows = await self._fetch(query, params)
        return int(rows[0]["n"])

    async def get_run(self, workflow_id: str, run_id: str | None = None) -> RunRow | None:
        """One run; with ``run_id`` None, the workflow id's latest run (None if unknown)."""
        where: sql.Composable = sql.SQL("workflow_id = %s")
        params: list[Any] = [workflow_id]
        if run_id is not None:
            where = where + sql.SQL(" AND run_id = %s")
            params.append(run_id)
        query = sql.SQL(
            "SELECT {cols} FROM {table} WHERE {where} "
            "ORDER BY start_time DESC, (close_time IS NULL) DESC, run_id DESC LIMIT 1"
        ).format(
            cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
            table=sql.Identifier(self.table),
            where=where,
        )
        rows = await self._fetch(query, params)
        return RunRow.from_db(rows[0]) if rows else None

    async def minute_stats(
        self, since: datetime, until: datetime, workflow_type: str | None = None
    ) -> list[MinuteStats]:
        """Per workflow type and minute in [since, until): runs started, runs closed by
        status, and start-to-close percentiles of those closed."""
        params: list[Any] = [since, until] + ([workflow_type] if workflow_type else [])
        closed = await self._fetch(windows.closed_query(self.table, workflow_type), params)
        started = await self._fetch(windows.started_query(self.table, workflow_type), params)
        return windows.fold(closed, started)

    async def counts(self) -> dict[str, int]:
        """How many runs have each status (statuses with no run are absent)."""
        query = sql.SQL("SELECT status, count(*) AS n FROM {} GROUP BY status").format(
            sql.Identifier(self.table)
        )
        return {r["status"]: int(r["n"]) for r in await self._fetch(query, [])}


def _filters(
    *,
    status: str | None = None,
    workflow_type: str | None = None,
    search: dict[str, Any] | None = None,
    build_id: str | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    parked: bool | None = None,
) -> tuple[list[sql.Composable], list[Any]]:
    """The WHERE terms and their parameters of a run filter (see ``list_runs``)."""
    where: list[sql.Composable] = []
    params: list[Any] = []
    if status is not None:
        where.append(sql.SQL("status = %s"))
        params.append(status.upper())
    if workflow_type is not None:
        where.append(sql.SQL("workflow_type = %s"))
        params.append(workflow_type)
    if search:
        where.append(sql.SQL("search_attributes @> %s"))
        params.append(Jsonb(search))
    if build_id is not None:
        where.append(sql.SQL("build_ids @> %s"))
        params.append(Jsonb([build_id]))
    if started_after is not None:
        where.append(sql.SQL("start_time >= %s"))
        params.append(started_after)
    if started_before is not None:
        where.append(sql.SQL("start_time < %s"))
        params.append(started_before)
    if parked is not None:
        where.append(sql.SQL("parked IS NOT NULL" if parked else "parked IS NULL"))
    return where, params
