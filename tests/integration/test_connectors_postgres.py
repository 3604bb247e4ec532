"""The idempotent ledger on a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import socket

import psycopg
import pytest

from orchestrator.connectors.postgres import Ledger, Receipt, migrate
from orchestrator.exceptions import ApplicationError

pytestmark = pytest.mark.integration


async def test_migrate_is_idempotent_and_concurrent_safe(database: str) -> None:
    await asyncio.gather(*(migrate(database) for _ in range(4)))
    await migrate(database)
    async with await psycopg.AsyncConnection.connect(database) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'ledger_%'"
        )
        row = await cur.fetchone()
    assert row == (3,)


async def test_debit_credit_transfer_and_balances(database: str) -> None:
    async with Ledger.connect(database) as ledger:
        await ledger.open_account("alice", 1_000)
        await ledger.open_account("bob")
        r = await ledger.debit("k-debit", "alice", 300)
        assert (r.operation, r.amount, r.replayed) == ("debit", 300, False)
        assert r.balances == {"alice": 700}
        r = await ledger.credit("k-credit", "bob", 50)
        assert r.balances == {"bob": 50}
        r = await ledger.transfer("k-transfer", "alice", "bob", 200)
        assert r.balances == {"alice": 500, "bob": 250}
        assert await ledger.balance("alice") == 500
        assert await ledger.total() == (750, 2)


async def test_same_key_returns_the_recorded_result_and_applies_once(database: str) -> None:
    async with Ledger.connect(database) as ledger:
        await ledger.open_account("alice", 1_000)
        first = await ledger.debit("k1", "alice", 100)
        await ledger.credit("other", "alice", 5)
        again = await ledger.debit("k1", "alice", 100)
        assert again == first  # same recorded balances, not today's balance
        assert again.replayed
        assert await ledger.balance("alice") == 905
        assert await ledger.applied_count("k1") == 1


async def test_twenty_concurrent_calls_with_one_key_apply_once(database: str) -> None:
    async with Ledger.connect(database, max_size=6) as ledger:
        await ledger.open_account("alice", 1_000)
        results = await asyncio.gather(
            *(ledger.debit("same-key", "alice", 10) for _ in range(20))
        )
        assert len({(r.key, r.balances["alice"]) for r in results}) == 1
        assert sum(not r.replayed for r in results) == 1
        assert await ledger.balance("alice") == 990
        assert await ledger.applied_count("same-key") == 1


async def test_same_key_with_a_different_request_is_a_terminal_error(database: str) -> None:
    async with Ledger.connect(database) as ledger:
        await ledger.open_account("alice", 1_000)
        await ledger.debit("k1", "alice", 100)
        for call in (ledger.debit("k1", "alice", 101), ledger.credit("k1", "alice", 100)):
            with pytest.raises(ApplicationError) as info:
                await call
            assert info.value.type == "IdempotencyKeyReused"
            assert not info.value.retryable
        assert await ledger.balance("alice") == 900


async def test_insufficient_funds_is_terminal_and_recorded(database: str) -> None:
    async with Ledger.connect(database) as ledger:
        await ledger.open_account("alice", 50)
        with pytest.raises(ApplicationError) as info:
            await ledger.debit("k1", "alice", 100)
        assert info.value.type == "InsufficientFunds"
        assert not info.value.retryable
        await ledger.credit("topup", "alice", 500)
        # Same key, same answer, even though the money is there now.
        with pytest.raises(ApplicationError, match="has 50, needs 100"):
            await ledger.debit("k1", "alice", 100)
        assert await ledger.balance("alice") == 550
        with pytest.raises(ApplicationError) as info:
            await ledger.transfer("k2", "alice", "ghost", 1)
        assert info.value.type == "AccountNotFound"
        with pytest.raises(ApplicationError) as info:
            await ledger.debit("k3", "alice", 0)
        assert info.value.type == "InvalidAmount"
        with pytest.raises(ApplicationError) as info:
            await ledger.open_account("alice", 1, key="another-open")
        assert info.value.type == "AccountExists"


async def test_reversals_undo_once_and_void_operations_that_never_ran(database: str) -> None:
    async with Ledger.connect(database) as ledger:
        await ledger.open_account("alice", 1_000)
        await ledger.open_account("bob", 0)
        await ledger.transfer("t1", "alice", "bob", 300)
        r = await ledger.reverse("undo-t1", "t1")
        assert (r.applied, r.amount, r.balances) == (True, 300, {"alice": 1_000, "bob": 0})
        assert await ledger.reverse("undo-t1", "t1") == r
        second = await ledger.reverse("undo-t1-again", "t1")
        assert not second.applied
        assert "already reversed by 'undo-t1'" in second.note
        assert await ledger.total() == (1_000, 2)

        # Compensation registered before the call: the call never arrived ...
        void = await ledger.reverse("undo-d1", "d1")
        assert not void.applied
        assert "voided" in void.note
        # ... and when the delayed original finally arrives it is refused, not applied.
        with pytest.raises(ApplicationError) as info:
            await ledger.debit("d1", "alice", 10)
        assert info.value.type == "OperationVoided"
        assert not info.value.retryable
        assert await ledger.balance("alice") == 1_000

        # A reversal may overdraw: compensations must be able to finish.
        await ledger.credit("c1", "bob", 40)
        await ledger.debit("spend", "bob", 30)
        r = await ledger.reverse("undo-c1", "c1")
        assert r.balances == {"bob": -30}

        with pytest.raises(ApplicationError) as info:
            await ledger.reverse("undo-undo", "undo-c1")
        assert info.value.type == "NotReversible"


async def test_concurrent_transfers_in_both_directions_do_not_deadlock(database: str) -> None:
    async with Ledger.connect(database, max_size=4) as ledger:
        await ledger.open_account("a", 10_000)
        await ledger.open_account("b", 10_000)
        await asyncio.gather(
            *(
                ledger.transfer(f"t{i}", "a" if i % 2 else "b", "b" if i % 2 else "a", i)
                for i in range(1, 41)
            )
        )
        assert await ledger.total() == (20_000, 2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_database_is_a_retryable_error() -> None:
    dsn = f"postgresql://nobody:secretpw@127.0.0.1:{_closed_port()}/none?connect_timeout=1"
    with pytest.raises(ApplicationError) as info:
        async with Ledger.connect(dsn, wait=1.0):
            pass
    assert info.value.retryable
    assert info.value.type == "PostgresTransientError"
    assert "secretpw" not in info.value.message
    with pytest.raises(ApplicationError) as info:
        await migrate(dsn)
    assert info.value.retryable


async def test_receipt_json_round_trip() -> None:
    r = Receipt("k", "transfer", 5, {"a": 1, "b": 2}, True, None, "")
    assert Receipt.from_json(r.to_json()) == r
