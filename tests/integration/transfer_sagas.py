"""A transfer saga whose activities write to PostgreSQL, for crash tests.

Every side effect is recorded under its activity's idempotency key (primary key),
in the same database transaction as the balance change: a redelivered attempt
finds its key and changes nothing. The DSN comes from ``TRANSFER_TEST_DSN``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from orchestrator import activity, workflow
from orchestrator.exceptions import ApplicationError
from orchestrator.retry import RetryPolicy

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (id text PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE IF NOT EXISTS side_effects (
    idempotency_key text PRIMARY KEY, op text NOT NULL, transfer_id text NOT NULL,
    account text NOT NULL, amount bigint NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (idempotency_key text NOT NULL, attempt int NOT NULL);
"""


@dataclass
class Transfer:
    transfer_id: str
    source: str
    target: str
    amount: int


def _apply(op: str, transfer_id: str, account: str, delta: int) -> None:
    info = activity.info()
    with psycopg.connect(os.environ["TRANSFER_TEST_DSN"]) as conn:
        conn.execute("INSERT INTO deliveries VALUES (%s, %s)", (info.idempotency_key, info.attempt))
        conn.commit()
        inserted = conn.execute(
            "INSERT INTO side_effects VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (info.idempotency_key, op, transfer_id, account, delta),
        ).rowcount
        if inserted:
            row = conn.execute(
                "UPDATE accounts SET balance = balance + %s WHERE id = %s "
                "AND balance + %s >= 0 RETURNING balance",
                (delta, account, delta),
            ).fetchone()
            if row is None:
                conn.rollback()
                raise ApplicationError(f"insufficient funds in {account}", non_retryable=True)
        conn.commit()


@activity.defn(name="transfer.debit")
def debit(t: Transfer) -> None:
    _apply("debit", t.transfer_id, t.source, -t.amount)


@activity.defn(name="transfer.credit")
def credit(t: Transfer) -> None:
    if t.target == "closed-account":
        raise ApplicationError("target account is closed", non_retryable=True)
    _apply("credit", t.transfer_id, t.target, t.amount)


@activity.defn(name="transfer.refund")
def refund(t: Transfer) -> None:
    _apply("refund", t.transfer_id, t.source, t.amount)


STEP = {
    "task_queue": "payments",
    "start_to_close": timedelta(seconds=10),
    "retry": RetryPolicy(initial=timedelta(milliseconds=200), maximum=timedelta(seconds=2)),
}


@workflow.defn(name="transfer.v1")
async def transfer(ctx: workflow.WorkflowContext, t: Transfer) -> str:
    saga = ctx.saga()
    await saga.step(debit, t, compensate=refund, **STEP)
    await saga.step(credit, t, **STEP)
    return f"{t.transfer_id}: moved {t.amount}"
