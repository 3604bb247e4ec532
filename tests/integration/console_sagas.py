"""Sagas the console's browser test runs under ``saga dev`` (task queue ``console``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from orchestrator import activity, workflow
from orchestrator.exceptions import ApplicationError, ChildWorkflowError
from orchestrator.workflow import RetryPolicy

TASK_QUEUE = "console"
REFUND_DOWN_ENV = "CONSOLE_REFUND_DOWN"
"""While the file this variable names exists, ``console.refund`` fails."""

#: two quick attempts, so a failing step shows its retries without slowing the test
QUICK = RetryPolicy(initial=timedelta(milliseconds=100), max_attempts=2)


@dataclass
class Order:
    order_id: str
    amount: int


@activity.defn(name="console.reserve")
async def reserve(order: Order) -> str:
    return f"reserved {order.amount} for {order.order_id}"


@activity.defn(name="console.release")
async def release(order: Order) -> str:
    return f"released {order.order_id}"


@activity.defn(name="console.charge")
async def charge(order: Order) -> str:
    if order.amount > 100:
        raise ApplicationError(
            f"card limit is 100, asked {order.amount}", type="CardLimit", non_retryable=True
        )
    return f"charged {order.amount}"


@workflow.defn(name="console.order")
async def order(ctx: workflow.WorkflowContext, o: Order) -> str:
    """Reserve (undone by release), then charge: over 100 the charge fails for good and
    the reservation is released."""
    saga = ctx.saga()
    await saga.step(reserve, o, compensate=release, retry=QUICK)
    await saga.step(charge, o, retry=QUICK)
    return f"order {o.order_id} done"


@workflow.defn(name="console.hold")
async def hold(ctx: workflow.WorkflowContext, o: Order) -> str:
    """Reserve, then wait a day before charging: cancelled meanwhile, it releases."""
    saga = ctx.saga()
    await saga.step(reserve, o, compensate=release, retry=QUICK)
    await ctx.sleep(timedelta(days=1))
    await saga.step(charge, o, retry=QUICK)
    return f"order {o.order_id} done"


@activity.defn(name="console.refund")
def refund(order: Order) -> str:
    flag = os.environ.get(REFUND_DOWN_ENV)
    if flag and Path(flag).exists():
        raise ApplicationError("bank unreachable", type="BankDown")
    return f"refunded {order.order_id}"


@workflow.defn(name="console.fragile")
async def fragile(ctx: workflow.WorkflowContext, o: Order) -> str:
    """Reserve (undone by a refund that fails while the bank is down), then charge:
    over 100 the charge fails for good, and with the bank down the saga ends
    COMPENSATION_FAILED for an operator to repair."""
    saga = ctx.saga()
    await saga.step(reserve, o, compensate=refund, retry=QUICK, compensation_retry=QUICK)
    await saga.step(charge, o, retry=QUICK)
    return f"order {o.order_id} done"


@workflow.defn(name="console.parent")
async def parent(ctx: workflow.WorkflowContext, o: Order) -> str:
    """Start a ``console.hold`` child (id ``<order_id>-child``) and wait for it through
    its handle: cancelled from the console, the child releases and the parent says so."""
    child = await ctx.start_child_workflow(hold, o, id=f"{o.order_id}-child")
    try:
        return await child
    except ChildWorkflowError:
        return f"child {child.workflow_id} was stopped"
