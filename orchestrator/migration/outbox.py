"""Transactional outbox relay: committed outbox rows become saga starts, exactly once.

An existing service inserts a row into the outbox table in its own transaction, next
to its business writes. The relay claims unpublished rows (``FOR UPDATE SKIP
LOCKED``, so several relays share the work without ever holding the same row),
publishes one ``StartWorkflow`` per row, waits until Kafka acknowledged all of them,
and only then marks them published, in the transaction that locked them.

A crash between the ack and the commit publishes the batch again. That is safe: the
workflow id is the row's business key (permanent, see ``ids``) and starts use
``REJECT_DUPLICATE``, so the engine starts one run per key. Rolled-back rows were
never visible, so they start nothing.

An insert trigger sends ``NOTIFY <table>`` (delivered at commit), which wakes an idle
relay at once; without a notification it polls every ``poll_interval_s``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from orchestrator.background import BackgroundRunner
from orchestrator.log.topics import TopicLayout
from orchestrator.migration import DEFAULT_OUTBOX_TABLE
from orchestrator.migration.ids import outbox_request_id, outbox_workflow_id
from orchestrator.migration.publisher import PublishError, StartPublisher

__all__ = ["CRASH_HOOK_ENV", "DEFAULT_TABLE", "OutboxMetrics", "OutboxRelay", "migrate"]

log = logging.getLogger(__name__)

DEFAULT_TABLE = DEFAULT_OUTBOX_TABLE
CRASH_HOOK_ENV = "SAGA_OUTBOX_TEST_KILL_AFTER_PUBLISH"
"""Test-only: when set (to anything), the relay SIGKILLs itself after Kafka acknowledged
its first non-empty batch and before marking it: the crash the design must survive."""

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id            bigserial PRIMARY KEY,
    business_key  text NOT NULL
                  CHECK (business_key <> '' AND business_key = btrim(business_key)),
    workflow_type text,
    task_queue    text,
    payload       jsonb,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at  timestamptz
);
CREATE INDEX IF NOT EXISTS {pending_index} ON {table} (id) WHERE published_at IS NULL;
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify({channel}, '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS {trigger} ON {table};
CREATE TRIGGER {trigger} AFTER INSERT ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""


def migrate(conn: psycopg.Connection[Any], table: str = DEFAULT_TABLE) -> None:
    """Create the outbox table, its pending-rows index and its NOTIFY trigger (idempotent).

    Runs in the caller's transaction when there is one; commit it to apply.
    """
    conn.execute(
        sql.SQL(_DDL).format(
            table=sql.Identifier(table),
            pending_index=sql.Identifier(f"{table}_pending"),
            function=sql.Identifier(f"{table}_notify"),
            trigger=sql.Identifier(f"{table}_notify"),
            channel=sql.Literal(table),
        )
    )


@dataclass(slots=True)
class OutboxMetrics:
    """Counters of one relay (read them from any thread; they only grow or are replaced)."""

    rows_published: int = 0
    batches: int = 0
    errors: int = 0
    last_lag_s: float = 0.0
    """Insert-to-published delay of the slowest row of the latest batch."""
    max_lag_s: float = 0.0
    """Slowest insert-to-published delay seen."""


class OutboxRelay(BackgroundRunner):
    """Relays one outbox table to ``<prefix>.commands``; run several for throughput or HA.

    ``default_workflow_type`` / ``default_task_queue`` apply to rows whose columns are
    NULL; rows without a workflow type and no default are left alone (they show in
    :meth:`backlog`). Each row's ``payload`` is the workflow's single input.
    """

    thread_name = "outbox-relay"

    def __init__(
        self,
        dsn: str,
        kafka_config: Mapping[str, Any],
        layout: TopicLayout,
        *,
        table: str = DEFAULT_TABLE,
        batch_size: int = 100,
        poll_interval_s: float = 1.0,
        default_workflow_type: str | None = None,
        default_task_queue: str = "default",
        publisher: StartPublisher | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.dsn = dsn
        self.table = table
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.default_workflow_type = default_workflow_type
        self.default_task_queue = default_task_queue
        self.publisher = publisher or StartPublisher(kafka_config, layout, source="/saga/outbox")
        self.metrics = OutboxMetrics()
        self._conn: psycopg.Connection[Any] | None = None
        where = "published_at IS NULL"
        if default_workflow_type is None:
            where += " AND workflow_type IS NOT NULL"
        ident = sql.Identifier(table)
        self._claim = sql.SQL(
            "SELECT id, business_key, workflow_type, task_queue, payload FROM {t} "
            "WHERE " + where + " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
        ).format(t=ident)
        self._mark = sql.SQL(
            "UPDATE {t} SET published_at = clock_timestamp() WHERE id = ANY(%s) "
            "RETURNING extract(epoch FROM published_at - created_at)::float8"
        ).format(t=ident)
        self._backlog = sql.SQL(
            "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)"
            "::float8 FROM {t} WHERE published_at IS NULL"
        ).format(t=ident)

    # --- one batch ----------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        return self._conn

    def run_once(self) -> int:
        """Claim, publish and mark one batch; return how many rows it held."""
        conn = self._connection()
        with conn.transaction():
            rows = conn.execute(self._claim, (self.batch_size,)).fetchall()
            if not rows:
                return 0
            for row_id, key, workflow_type, task_queue, payload in rows:
                self.publisher.start(
                    workflow_id=outbox_workflow_id(key),
                    workflow_type=str(workflow_type or self.default_workflow_type),
                    task_queue=task_queue or self.default_task_queue,
                    input=payload,
                    request_id=outbox_request_id(self.table, row_id),
                )
            self.publisher.flush()  # raises: the transaction rolls back, rows stay pending
            if os.environ.get(CRASH_HOOK_ENV):
                os.kill(os.getpid(), signal.SIGKILL)
            lags = [lag for (lag,) in conn.execute(self._mark, ([r[0] for r in rows],))]
        self.metrics.rows_published += len(rows)
        self.metrics.batches += 1
        self.metrics.last_lag_s = max(lags, default=0.0)
        self.metrics.max_lag_s = max(self.metrics.max_lag_s, self.metrics.last_lag_s)
        return len(rows)

    def backlog(self) -> tuple[int, float]:
        """Rows not yet published, and the age in seconds of the oldest of them."""
        row = self._connection().execute(self._backlog).fetchone()
        assert row is not None  # an aggregate always returns a row
        return int(row[0]), float(row[1])

    # --- the loop -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set: drain full batches, then wait for NOTIFY or poll."""
        listener: psycopg.Connection[Any] | None = None
        backoff = 0.5
        try:
            while not stop.is_set():
                try:
                    if listener is None or listener.closed:
                        listener = psycopg.connect(self.dsn, autocommit=True)
                        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.table)))
                    if self.run_once() >= self.batch_size:
                        continue  # more may be waiting
                    # notifications queued while we worked wake us at once
                    wait = min(self.poll_interval_s, 0.5)
                    deadline = time.monotonic() + self.poll_interval_s
                    woken = False
                    while not woken and not stop.is_set() and time.monotonic() < deadline:
                        woken = any(True for _ in listener.notifies(timeout=wait, stop_after=1))
                    backoff = 0.5
                except (psycopg.OperationalError, PublishError) as exc:
                    self.metrics.errors += 1
                    log.warning("outbox relay: %s; retrying in %.1fs", exc, backoff)
                    for conn in (listener, self._conn):
                        if conn is not None and conn.broken:
                            conn.close()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            if listener is not None:
                listener.close()
            if self._conn is not None:
                self._conn.close()
            self.publisher.close()
