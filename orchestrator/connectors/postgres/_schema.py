"""The ledger's tables, created by :func:`migrate` (safe to run any number of times)."""

from __future__ import annotations

import psycopg
from psycopg_pool import AsyncConnectionPool

from orchestrator.connectors.postgres._errors import error_for_psycopg

__all__ = ["SCHEMA_SQL", "migrate"]

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS ledger_accounts (
    account_id  text PRIMARY KEY,
    balance     bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ledger_idempotency (
    key           text PRIMARY KEY,
    operation     text NOT NULL,
    request_hash  text NOT NULL,
    result        jsonb NOT NULL,
    reversed_by   text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ledger_entries (
    id          bigserial PRIMARY KEY,
    key         text NOT NULL REFERENCES ledger_idempotency (key),
    account_id  text NOT NULL REFERENCES ledger_accounts (account_id),
    delta       bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ledger_entries_key ON ledger_entries (key);
"""

# Concurrent CREATE TABLE IF NOT EXISTS can still collide on the catalog; a
# transaction-scoped advisory lock makes concurrent migrations take turns.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('connectors.postgres.ledger'))"


async def migrate(target: str | AsyncConnectionPool) -> None:
    """Create the ledger tables if they are missing. ``target``: a DSN or a pool.

    Raises a classified ApplicationError when the database cannot be reached.
    """
    try:
        if isinstance(target, str):
            async with await psycopg.AsyncConnection.connect(target) as conn:
                await _apply(conn)
        else:
            async with target.connection() as conn:
                await _apply(conn)
    except psycopg.Error as exc:
        raise error_for_psycopg(exc) from None


async def _apply(conn: psycopg.AsyncConnection[object]) -> None:
    async with conn.transaction():
        await conn.execute(_LOCK)
        await conn.execute(SCHEMA_SQL)
