"""VisibilityStore.open() closes the pool it opened when it fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from orchestrator.visibility import store as store_module
from orchestrator.visibility.store import VisibilityStore


class _Conn:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def execute(self, query: Any) -> None:
        if self.error is not None:
            raise self.error


class FakePool:
    instances: ClassVar[list[FakePool]] = []
    open_error: BaseException | None = None
    ddl_error: BaseException | None = None

    def __init__(self, dsn: str, **kwargs: Any) -> None:
        self.opened = self.closed = False
        FakePool.instances.append(self)

    async def open(self, wait: bool, timeout: float) -> None:  # noqa: ASYNC109 (the pool's API)
        self.opened = True
        if self.open_error is not None:
            raise self.open_error

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_Conn]:
        yield _Conn(self.ddl_error)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_pool(monkeypatch: pytest.MonkeyPatch) -> type[FakePool]:
    monkeypatch.setattr(store_module, "AsyncConnectionPool", FakePool)
    FakePool.instances = []
    FakePool.open_error = FakePool.ddl_error = None
    return FakePool


@pytest.mark.parametrize(
    ("stage", "error"),
    [
        ("ddl", psycopg.errors.UndefinedTable("relation does not exist")),
        ("ddl", psycopg.OperationalError("server closed the connection")),
        ("open", PoolTimeout("pool initialization incomplete after 10.0 sec")),
    ],
)
async def test_a_failed_open_closes_its_pool(
    fake_pool: type[FakePool], stage: str, error: Exception
) -> None:
    setattr(fake_pool, f"{stage}_error", error)
    store = VisibilityStore("postgresql://x/y")
    with pytest.raises(type(error)):
        await store.open()
    (pool,) = fake_pool.instances
    assert pool.closed
    with pytest.raises(RuntimeError, match="not open"):
        await store.counts()


async def test_async_with_that_fails_to_open_leaves_no_pool(fake_pool: type[FakePool]) -> None:
    fake_pool.ddl_error = psycopg.OperationalError("server closed the connection")
    with pytest.raises(psycopg.OperationalError):
        async with VisibilityStore("postgresql://x/y"):
            pass
    assert [p.closed for p in fake_pool.instances] == [True]


async def test_missing_privilege_keeps_the_pool_for_reading(fake_pool: type[FakePool]) -> None:
    fake_pool.ddl_error = psycopg.errors.InsufficientPrivilege("permission denied")
    store = VisibilityStore("postgresql://x/y")
    await store.open()
    (pool,) = fake_pool.instances
    assert not pool.closed
    await store.close()
    assert pool.closed
