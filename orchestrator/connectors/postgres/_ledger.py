"""An idempotent double-entry ledger on PostgreSQL (psycopg 3, async pool).

Every money operation takes an idempotency key. Its idempotency record (key,
operation, request hash, recorded result) is inserted in the same transaction as
the balance change, before it: a concurrent call with the same key waits on the
primary key until the first commits, then reads the recorded result. So a key is
applied at most once, and every call with it gets the same answer, including a
recorded rejection such as insufficient funds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from orchestrator.connectors.postgres._errors import error_for_psycopg, rejection
from orchestrator.exceptions import ApplicationError

__all__ = ["Ledger", "Receipt"]

Conn = psycopg.AsyncConnection[TupleRow]
_TX_ATTEMPTS = 3  # serialization failures and deadlocks are retried here first


class _Rejected(Exception):  # noqa: N818 (internal signal, becomes ApplicationError)
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Receipt:
    """The recorded outcome of one ledger operation.

    ``balances`` holds each touched account's balance right after the operation;
    ``applied`` is False for a reversal that found nothing to undo; ``replayed`` is
    True when this call returned the result recorded by an earlier call.
    """

    key: str
    operation: str
    amount: int
    balances: dict[str, int]
    applied: bool = True
    original_key: str | None = None
    note: str = ""
    replayed: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The recorded JSON form (without ``replayed``)."""
        return {
            "key": self.key,
            "operation": self.operation,
            "amount": self.amount,
            "balances": self.balances,
            "applied": self.applied,
            "original_key": self.original_key,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replayed: bool = False) -> Receipt:
        """Rebuild a receipt from its recorded JSON form."""
        return cls(
            key=data["key"],
            operation=data["operation"],
            amount=int(data["amount"]),
            balances={k: int(v) for k, v in data["balances"].items()},
            applied=bool(data["applied"]),
            original_key=data.get("original_key"),
            note=data.get("note", ""),
            replayed=replayed,
        )


def _request_hash(operation: str, request: Mapping[str, Any]) -> str:
    text = json.dumps({"operation": operation, **request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise rejection("InvalidAmount", f"amount must be a positive integer, got {amount!r}")


def _check_key(key: str) -> None:
    if not key or len(key) > 400:
        raise rejection("InvalidIdempotencyKey", "idempotency key must be 1-400 characters")


class Ledger:
    """Accounts and idempotent money movements (amounts in integer minor units).

    Build one per worker process with :meth:`connect` (or around your own pool).
    Every method raises :class:`ApplicationError`: terminal for business rejections
    (``InsufficientFunds``, ``AccountNotFound``, ``AccountExists``,
    ``IdempotencyKeyReused``, ``OperationVoided``, ``NotReversible``,
    ``InvalidAmount``), retryable ``PostgresTransientError`` for transient database
    trouble, terminal ``PostgresError`` for the rest.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 4, wait: float = 10.0
    ) -> AsyncIterator[Ledger]:
        """Open a pool on ``dsn``, run :func:`migrate`, yield a ledger, close the pool.

        ``wait``: seconds to wait for a connection (at start and per operation).
        """
        from orchestrator.connectors.postgres._schema import migrate

        pool = AsyncConnectionPool(
            dsn, min_size=min_size, max_size=max_size, timeout=wait, open=False
        )
        try:
            await pool.open(wait=True, timeout=wait)
        except psycopg.Error as exc:
            await pool.close()
            raise error_for_psycopg(exc) from None
        try:
            await migrate(pool)
            yield cls(pool)
        finally:
            await pool.close()

    # -- operations ---------------------------------------------------------------

    async def open_account(
        self, account_id: str, initial_balance: int = 0, *, key: str | None = None
    ) -> Receipt:
        """Create an account; ``key`` defaults to ``open:<account_id>``."""
        if initial_balance < 0:
            raise rejection("InvalidAmount", "initial balance must not be negative")
        key = key or f"open:{account_id}"

        async def apply(conn: Conn) -> Receipt:
            cur = await conn.execute(
                "INSERT INTO ledger_accounts (account_id, balance) VALUES (%s, 0) "
                "ON CONFLICT DO NOTHING RETURNING account_id",
                (account_id,),
            )
            if await cur.fetchone() is None:
                raise _Rejected("AccountExists", f"account {account_id!r} already exists")
            balances = await _move(conn, key, {account_id: initial_balance}) if (
                initial_balance
            ) else {account_id: 0}
            return Receipt(key, "open", initial_balance, balances)

        return await self._once(
            key, "open", {"account": account_id, "amount": initial_balance}, apply
        )

    async def debit(self, key: str, account_id: str, amount: int) -> Receipt:
        """Take ``amount`` from an account; ``InsufficientFunds`` if it would go negative."""
        _check_amount(amount)

        async def apply(conn: Conn) -> Receipt:
            return Receipt(key, "debit", amount, await _move(conn, key, {account_id: -amount}))

        return await self._once(key, "debit", {"account": account_id, "amount": amount}, apply)

    async def credit(self, key: str, account_id: str, amount: int) -> Receipt:
        """Add ``amount`` to an account."""
        _check_amount(amount)

        async def apply(conn: Conn) -> Receipt:
            return Receipt(key, "credit", amount, await _move(conn, key, {account_id: amount}))

        return await self._once(key, "credit", {"account": account_id, "amount": amount}, apply)

    async def transfer(self, key: str, source: str, target: str, amount: int) -> Receipt:
        """Move ``amount`` from ``source`` to ``target`` atomically."""
        _check_amount(amount)
        if source == target:
            raise rejection("InvalidTransfer", "source and target are the same account")

        async def apply(conn: Conn) -> Receipt:
            balances = await _move(conn, key, {source: -amount, target: amount})
            return Receipt(key, "transfer", amount, balances)

        request = {"source": source, "target": target, "amount": amount}
        return await self._once(key, "transfer", request, apply)

    async def reverse(self, key: str, original_key: str) -> Receipt:
        """Undo the operation recorded under ``original_key`` (refund a debit, ...).

        Safe whatever happened to the original: if it was never applied, its key is
        voided so that a late arrival is refused (``OperationVoided``) instead of
        applied; if it was rejected or already reversed, nothing moves
        (``applied=False``). A reversal always applies, even if it overdraws the
        account that received the money: compensations must be able to finish.
        """
        _check_key(original_key)

        async def apply(conn: Conn) -> Receipt:
            return await _reverse(conn, key, original_key)

        return await self._once(key, "reverse", {"original_key": original_key}, apply)

    # -- reads --------------------------------------------------------------------

    async def balance(self, account_id: str) -> int:
        """The current balance; ``AccountNotFound`` if there is no such account."""
        rows = await self._read(
            "SELECT balance FROM ledger_accounts WHERE account_id = %s", (account_id,)
        )
        if not rows:
            raise rejection("AccountNotFound", f"no account {account_id!r}")
        return int(rows[0][0])

    async def total(self) -> tuple[int, int]:
        """``(sum of all balances, number of accounts)``: the conservation check."""
        rows = await self._read(
            "SELECT coalesce(sum(balance), 0), count(*) FROM ledger_accounts", ()
        )
        return int(rows[0][0]), int(rows[0][1])

    async def applied_count(self, key: str) -> int:
        """How many journal entries ``key`` wrote (0 if it never moved money)."""
        rows = await self._read("SELECT count(*) FROM ledger_entries WHERE key = %s", (key,))
        return int(rows[0][0])

    # -- machinery ----------------------------------------------------------------

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise error_for_psycopg(exc) from None

    async def _once(
        self,
        key: str,
        operation: str,
        request: Mapping[str, Any],
        apply: Callable[[Conn], Awaitable[Receipt]],
    ) -> Receipt:
        _check_key(key)
        digest = _request_hash(operation, request)
        for attempt in range(1, _TX_ATTEMPTS + 1):
            try:
                return await self._transaction(key, operation, digest, apply)
            except psycopg.Error as exc:
                if attempt < _TX_ATTEMPTS and exc.sqlstate in {"40001", "40P01"}:
                    continue
                raise error_for_psycopg(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _transaction(
        self, key: str, operation: str, digest: str, apply: Callable[[Conn], Awaitable[Receipt]]
    ) -> Receipt:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO ledger_idempotency (key, operation, request_hash, result) "
                "VALUES (%s, %s, %s, '{}') ON CONFLICT (key) DO NOTHING RETURNING key",
                (key, operation, digest),
            )
            if await cur.fetchone() is None:
                return await _replay(conn, key, operation, digest)
            try:
                receipt = await apply(conn)
                result: dict[str, Any] = receipt.to_json()
            except _Rejected as rej:
                result = {"rejected": {"type": rej.kind, "message": rej.message}}
                receipt = None
            await conn.execute(
                "UPDATE ledger_idempotency SET result = %s WHERE key = %s", (Jsonb(result), key)
            )
        if receipt is None:
            raise rejection(result["rejected"]["type"], result["rejected"]["message"])
        return receipt


async def _replay(conn: Conn, key: str, operation: str, digest: str) -> Receipt:
    cur = await conn.execute(
        "SELECT operation, request_hash, result FROM ledger_idempotency WHERE key = %s", (key,)
    )
    row = await cur.fetchone()
    if row is None:  # pragma: no cover - the conflicting row cannot vanish
        raise ApplicationError(f"idempotency record {key!r} vanished")
    recorded_op, recorded_digest, result = row
    if recorded_op == "void":
        raise rejection(
            "OperationVoided",
            f"key {key!r} was voided by reversal {result.get('voided_by')!r} before it ran",
        )
    if recorded_op != operation or recorded_digest != digest:
        raise rejection(
            "IdempotencyKeyReused",
            f"key {key!r} was already used for a different {recorded_op} request",
        )
    if "rejected" in result:
        raise rejection(result["rejected"]["type"], result["rejected"]["message"])
    return Receipt.from_json(result, replayed=True)


async def _move(conn: Conn, key: str, deltas: Mapping[str, int], *, overdraw: bool = False) -> (
    dict[str, int]
):
    """Apply ``deltas`` to locked accounts; journal them; return the new balances."""
    ids = sorted(deltas)  # one lock order everywhere: no deadlocks between transfers
    cur = await conn.execute(
        "SELECT account_id, balance FROM ledger_accounts WHERE account_id = ANY(%s) "
        "ORDER BY account_id FOR UPDATE",
        (ids,),
    )
    current = {row[0]: int(row[1]) for row in await cur.fetchall()}
    missing = [a for a in ids if a not in current]
    if missing:
        raise _Rejected("AccountNotFound", f"no account {missing[0]!r}")
    after = {a: current[a] + deltas[a] for a in ids}
    for account, balance in after.items():
        if balance < 0 and deltas[account] < 0 and not overdraw:
            raise _Rejected(
                "InsufficientFunds",
                f"account {account!r} has {current[account]}, needs {-deltas[account]}",
            )
    for account in ids:
        await conn.execute(
            "UPDATE ledger_accounts SET balance = %s WHERE account_id = %s",
            (after[account], account),
        )
        await conn.execute(
            "INSERT INTO ledger_entries (key, account_id, delta) VALUES (%s, %s, %s)",
            (key, account, deltas[account]),
        )
    return after


async def _reverse(conn: Conn, key: str, original_key: str) -> Receipt:
    cur = await conn.execute(
        "INSERT INTO ledger_idempotency (key, operation, request_hash, result, reversed_by) "
        "VALUES (%s, 'void', '', %s, %s) ON CONFLICT (key) DO NOTHING RETURNING key",
        (original_key, Jsonb({"voided_by": key}), key),
    )
    if await cur.fetchone() is not None:
        return Receipt(key, "reverse", 0, {}, False, original_key, "original never applied; voided")
    cur = await conn.execute(
        "SELECT operation, result, reversed_by FROM ledger_idempotency WHERE key = %s "
        "FOR UPDATE",
        (original_key,),
    )
    row = await cur.fetchone()
    if row is None:  # pragma: no cover - the conflicting row cannot vanish
        raise _Rejected("NotReversible", f"no record for {original_key!r}")
    operation, result, reversed_by = row
    if reversed_by is not None:
        return Receipt(
            key, "reverse", 0, {}, False, original_key, f"already reversed by {reversed_by!r}"
        )
    if operation not in {"debit", "credit", "transfer"}:
        raise _Rejected("NotReversible", f"a {operation} ({original_key!r}) cannot be reversed")
    await conn.execute(
        "UPDATE ledger_idempotency SET reversed_by = %s WHERE key = %s", (key, original_key)
    )
    if "rejected" in result:
        return Receipt(key, "reverse", 0, {}, False, original_key, "original was rejected")
    cur = await conn.execute(
        "SELECT account_id, delta FROM ledger_entries WHERE key = %s", (original_key,)
    )
    undo = {account: -int(delta) for account, delta in await cur.fetchall()}
    balances = await _move(conn, key, undo, overdraw=True)
    return Receipt(key, "reverse", int(result["amount"]), balances, True, original_key)
