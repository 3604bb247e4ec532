"""PostgreSQL is real and usable from psycopg 3 (sync, async, pooled)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

pytestmark = pytest.mark.integration


def test_psycopg_round_trip(database: str) -> None:
    with psycopg.connect(database) as conn:
        conn.execute("CREATE TABLE accounts (id text PRIMARY KEY, balance bigint NOT NULL)")
        conn.execute("INSERT INTO accounts VALUES ('alice', 100), ('bob', 50)")
        conn.commit()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO accounts VALUES ('alice', 1)")
        conn.rollback()
        total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()
    assert total == (150,)


async def test_async_pool_round_trip(database: str) -> None:
    async with AsyncConnectionPool(database, min_size=1, max_size=4, open=False) as pool:
        await pool.open(wait=True, timeout=10)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT %s::jsonb ->> 'status'", ('{"status": "RUNNING"}',))
            assert await cur.fetchone() == ("RUNNING",)
