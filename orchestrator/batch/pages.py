"""The batch activities: count the matching runs, and apply the operation to the runs
of one page of the visibility listing.

Each page is one activity attempt on the ``saga.batch`` task queue (any ``saga
worker`` that runs an engine serves it). The attempt lists the page with the
visibility store's own query (:meth:`VisibilityStore.list_runs`, newest first,
keyset cursor), then deals with its runs one at a time, paced to the batch's rate,
each through the client by run id, waiting for the shard's answer.

A page can run more than once (a crash before the workflow recorded it, a timeout).
The ledger makes that safe: a PostgreSQL table with one row per (batch, run), claimed
before the operation is sent and given its outcome after. A later attempt leaves a
run with an outcome alone; a run claimed but without an outcome (the attempt died in
between) gets the operation again, which is idempotent at the shard: reset by run id
is refused once the run is no longer current; cancel, terminate, pause and unpause of
a run that already has them change nothing; a signal carries the stable request id
``batch/{ledger key}/{run id}`` (:func:`signal_request_id`; the ledger key is the batch
id and a token its first run drew), so the run applies it once however many attempts
send it. The batch's totals are read back from the ledger, so
each run counts once however many attempts saw it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from orchestrator import activity
from orchestrator.batch.spec import (
    COUNT_ACTIVITY,
    PAGE_ACTIVITY,
    SAMPLES,
    BatchFilter,
    BatchOp,
    BatchOperation,
    BatchTotals,
    PageResult,
    parked_filter,
)
from orchestrator.client import Client
from orchestrator.exceptions import ApplicationError, OrchestratorError, ReplyTimeoutError
from orchestrator.visibility import DEFAULT_TABLE
from orchestrator.visibility.store import RunRow, VisibilityStore

__all__ = [
    "LEDGER_TABLE",
    "BatchPages",
    "Pacer",
    "apply_operation",
    "ledger_ddl",
    "signal_request_id",
]

log = logging.getLogger(__name__)

LEDGER_TABLE = "saga_batch_runs"
"""One row per (batch, run) a batch has dealt with or is dealing with."""

CLAIMED, DONE, SKIPPED, FAILED = "claimed", "done", "skipped", "failed"
_GIVE_UP_AFTER = 3
"""From this attempt of a page on, a run whose shard does not answer counts as failed."""


def ledger_ddl(table: str = LEDGER_TABLE) -> sql.Composed:
    """CREATE TABLE IF NOT EXISTS of the ledger."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        " batch_id text NOT NULL, workflow_id text NOT NULL, run_id text NOT NULL,"
        " outcome text NOT NULL, detail text NOT NULL DEFAULT '',"
        " updated_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (batch_id, workflow_id, run_id))"
    ).format(sql.Identifier(table))


class Pacer:
    """Spaces calls ``1/rate`` seconds apart (rate 0: no spacing)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._gap = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None

    def wait(self) -> None:
        """Return when the next call may go."""
        if not self._gap:
            return
        now = self._clock()
        if self._next is not None and self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._gap


def signal_request_id(ledger_id: str, run_id: str) -> str:
    """The request id of a batch's signal to run ``run_id`` (``ledger_id``: the batch's
    ledger key): the same for every attempt, so the run applies the signal once."""
    return f"batch/{ledger_id}/{run_id}"


def apply_operation(
    client: Client, operation: BatchOperation, row: RunRow, timeout: float, ledger_id: str
) -> tuple[str, str]:
    """Apply ``operation`` (of the batch whose ledger key is ``ledger_id``) to the run
    ``row`` names: (outcome, detail).

    A refusal by the shard (closed, not current, no such point) is ``skipped`` with its
    message; ReplyTimeoutError is raised (the page is retried); another client error
    is ``failed``.
    """
    handle = client.get_handle(row.workflow_id, row.run_id)
    o = operation
    try:
        match o.op:
            case BatchOp.RESET:
                new_run = handle.reset(
                    o.reason, event_seq=o.event_seq, before_build=o.bad_build,
                    exclude_signals=o.exclude_signals, operator=o.operator, timeout=timeout,
                )
                return DONE, f"new run {new_run}"
            case BatchOp.SIGNAL:
                assert o.signal_name is not None  # checked by BatchOperation.problems
                handle.signal(
                    o.signal_name,
                    *o.signal_args,
                    wait=timeout,
                    request_id=signal_request_id(ledger_id, row.run_id),
                )
            case BatchOp.CANCEL:
                handle.cancel(o.reason, wait=timeout)
            case BatchOp.TERMINATE:
                handle.terminate(o.reason, wait=timeout)
            case BatchOp.PAUSE:
                handle.pause(o.reason, operator=o.operator, wait=timeout)
            case BatchOp.UNPAUSE:
                handle.unpause(o.reason, operator=o.operator, wait=timeout)
    except ReplyTimeoutError:
        raise
    except ApplicationError as exc:  # the shard refused it: closed, not current, no point
        return SKIPPED, str(exc)
    except OrchestratorError as exc:
        return FAILED, f"{type(exc).__name__}: {exc}"
    return DONE, ""


class BatchPages:
    """The batch activities of one worker process: a client (made on first use) and
    the visibility database (listing and ledger)."""

    def __init__(
        self,
        client_factory: Callable[[], Client],
        dsn: str,
        *,
        table: str = DEFAULT_TABLE,
        op_timeout: float = 30.0,
    ) -> None:
        self._client_factory = client_factory
        self._dsn = dsn
        self._table = table
        self._op_timeout = op_timeout
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._ledger_ready = False

    def activities(self) -> dict[str, Callable[..., Any]]:
        """The activities to register with the ``saga.batch`` activity worker."""
        return {PAGE_ACTIVITY: self.page, COUNT_ACTIVITY: self.count}

    def close(self) -> None:
        """Close the client, if one was made."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _ensure_client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def count(self, filter: BatchFilter, op: BatchOp) -> int:
        """How many runs the filter matches now (as the pages list them: see
        :meth:`list_page` for parked runs)."""

        async def go() -> int:
            async with VisibilityStore(self._dsn, table=self._table) as store:
                return await store.count_runs(**filter.store_args(), parked=parked_filter(op))

        return asyncio.run(go())

    def list_page(
        self, filter: BatchFilter, cursor: str | None, page_size: int, op: BatchOp
    ) -> tuple[list[RunRow], str | None]:
        """One page of the listing after ``cursor``, and the cursor after it. Parked runs
        are left out except for a reset (the way out of parking): their shard answers
        nothing else, it dead-letters the command."""

        async def go() -> tuple[list[RunRow], str | None]:
            async with VisibilityStore(self._dsn, table=self._table) as store:
                return await store.list_runs(
                    **filter.store_args(), parked=parked_filter(op), limit=page_size, after=cursor
                )

        return asyncio.run(go())

    def page(  # noqa: PLR0917 - the activity's arguments, as the workflow sends them
        self,
        ledger_id: str,
        operation: BatchOperation,
        filter: BatchFilter,
        cursor: str | None,
        page_size: int,
        rate: float,
    ) -> PageResult:
        """Apply ``operation`` to the runs of the page after ``cursor``; the next cursor
        and the batch's totals. ``ledger_id`` is the batch's key in the ledger."""
        rows, next_cursor = self.list_page(filter, cursor, page_size, operation.op)
        pacer = Pacer(rate)
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            self._ensure_ledger(conn)
            for row in rows:
                self._one(conn, ledger_id, operation, row, pacer)
            totals = ledger_totals(conn, ledger_id)
        return PageResult(listed=len(rows), next_cursor=next_cursor, totals=totals)

    def _ensure_ledger(self, conn: psycopg.Connection[Any]) -> None:
        if not self._ledger_ready:
            try:
                conn.execute(ledger_ddl())
            except psycopg.errors.UniqueViolation:  # another worker created it meanwhile
                log.debug("ledger table created concurrently")
            self._ledger_ready = True

    def _one(
        self,
        conn: psycopg.Connection[Any],
        ledger_id: str,
        operation: BatchOperation,
        row: RunRow,
        pacer: Pacer,
    ) -> None:
        key = [ledger_id, row.workflow_id, row.run_id]
        table = sql.Identifier(LEDGER_TABLE)
        claimed = conn.execute(
            sql.SQL(
                "INSERT INTO {} (batch_id, workflow_id, run_id, outcome) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1"
            ).format(table),
            [*key, CLAIMED],
        ).fetchone()
        if claimed is None:
            found = conn.execute(
                sql.SQL(
                    "SELECT outcome FROM {} WHERE batch_id = %s AND workflow_id = %s"
                    " AND run_id = %s"
                ).format(table),
                key,
            ).fetchone()
            if found is None or found[0] != CLAIMED:
                return  # dealt with already
            log.info("batch %s: %s run %s again (an attempt died after claiming it)",
                     ledger_id, operation.op, row.run_id)
        pacer.wait()
        client = self._ensure_client()
        try:
            outcome, detail = apply_operation(
                client, operation, row, self._op_timeout, ledger_id
            )
        except ReplyTimeoutError as exc:
            if activity.info().attempt < _GIVE_UP_AFTER:
                raise  # the page runs again (later), this run with it
            outcome, detail = FAILED, f"no answer from its shard: {exc}"
        if claimed is None and outcome == SKIPPED:
            # most often the dead attempt's own operation had gone through: say so
            detail = f"sent again after an attempt died mid-way, then refused: {detail}"
        conn.execute(
            sql.SQL(
                "UPDATE {} SET outcome = %s, detail = %s, updated_at = now()"
                " WHERE batch_id = %s AND workflow_id = %s AND run_id = %s"
            ).format(table),
            [outcome, detail, *key],
        )


def ledger_totals(conn: psycopg.Connection[Any], ledger_id: str) -> BatchTotals:
    """The batch's outcome counts and samples, from its ledger rows."""
    table = sql.Identifier(LEDGER_TABLE)
    counts = dict(
        conn.execute(
            sql.SQL("SELECT outcome, count(*) FROM {} WHERE batch_id = %s GROUP BY outcome")
            .format(table),
            [ledger_id],
        ).fetchall()
    )

    def sample(outcome: str) -> dict[str, str]:
        rows = conn.execute(
            sql.SQL(
                "SELECT workflow_id, run_id, detail FROM {} WHERE batch_id = %s"
                " AND outcome = %s ORDER BY updated_at, workflow_id LIMIT %s"
            ).format(table),
            [ledger_id, outcome, SAMPLES],
        ).fetchall()
        return {f"{w}/{r}": d for w, r, d in rows}

    return BatchTotals(
        done=int(counts.get(DONE, 0)),
        skipped=int(counts.get(SKIPPED, 0)),
        failed=int(counts.get(FAILED, 0)),
        in_doubt=int(counts.get(CLAIMED, 0)),
        skipped_sample=sample(SKIPPED),
        failed_sample=sample(FAILED),
    )
