"""A saga for the repair tests: two steps with compensations, then a step that fails
for good; the second compensation fails while the file ``BANK_DOWN_ENV`` names exists."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from orchestrator import activity, workflow
from orchestrator.exceptions import ApplicationError
from orchestrator.retry import RetryPolicy

QUEUE = "repairing"
BANK_DOWN_ENV = "REPAIR_TEST_BANK_DOWN"
"""While the file this variable names exists, ``repair.refund`` fails."""
FAST_ONCE = RetryPolicy(initial=timedelta(milliseconds=100), max_attempts=2)


@activity.defn(name="repair.book")
def book(item: str) -> str:
    if item == "ship":
        raise ApplicationError("no courier for this address", type="NoCourier",
                               non_retryable=True)
    return f"booked {item}"


@activity.defn(name="repair.refund")
def refund(item: str) -> str:
    if Path(os.environ[BANK_DOWN_ENV]).exists():
        raise ApplicationError("bank unreachable", type="BankDown")
    return f"refunded {item}"


@activity.defn(name="repair.release")
def release(item: str) -> str:
    return f"released {item}"


@workflow.defn(name="repair.order")
async def order(ctx: workflow.WorkflowContext, order_id: str) -> str:
    """Reserve stock, charge, ship: shipping fails, so the charge is refunded (which
    fails while the bank is down) and the stock released."""
    saga = ctx.saga()
    await saga.step(book, "stock", compensate=release, compensate_args=("stock",),
                    task_queue=QUEUE, compensation_retry=FAST_ONCE)
    await saga.step(book, "charge", compensate=refund, compensate_args=("charge",),
                    task_queue=QUEUE, compensation_retry=FAST_ONCE)
    await ctx.execute_activity(book, "ship", task_queue=QUEUE)
    return order_id
