"""Workflows with child workflows and continue-as-new, for the Kafka engine tests
(in process, and in worker processes via ``saga worker --sagas``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from orchestrator import activity, workflow
from orchestrator.exceptions import ApplicationError, ChildWorkflowError

LEDGER: list[str] = []  # what the activities did, in order (in-process tests only)


@activity.defn(name="kids.reserve")
async def reserve(order: str) -> str:
    LEDGER.append(f"reserve {order}")
    return f"R-{order}"


@activity.defn(name="kids.release")
async def release(order: str) -> None:
    LEDGER.append(f"release {order}")


@workflow.defn(name="kids.double")
async def double(ctx: workflow.WorkflowContext, n: int, nap_ms: int) -> int:
    """A child that waits (a durable timer), then answers."""
    await ctx.sleep(timedelta(milliseconds=nap_ms))
    return n * 2


@workflow.defn(name="kids.pay")
async def pay(ctx: workflow.WorkflowContext, amount: int) -> str:
    """A child that refuses amounts over 100."""
    await ctx.sleep(timedelta(milliseconds=20))
    if amount > 100:
        raise ApplicationError(f"amount {amount} over the limit", type="LimitExceeded")
    return f"paid {amount}"


@workflow.defn(name="kids.parent_of_two")
async def parent_of_two(
    ctx: workflow.WorkflowContext, ids: list[str], values: list[int], nap_ms: int
) -> list[int]:
    """Start one child per id at once and sum up their answers."""
    results = await asyncio.gather(
        *(
            ctx.execute_child_workflow(double, value, nap_ms, id=child_id, result_type=int)
            for child_id, value in zip(ids, values, strict=True)
        )
    )
    return list(results)


@workflow.defn(name="kids.order")
async def order(ctx: workflow.WorkflowContext, order_id: str, amount: int) -> str:
    """A saga: reserve, pay through a child workflow; a failed payment releases."""
    saga = ctx.saga()
    await saga.step(reserve, order_id, compensate=release, start_to_close=timedelta(seconds=10))
    try:
        receipt: str = await ctx.execute_child_workflow(
            pay, amount, id=f"{order_id}/payment", result_type=str
        )
    except ChildWorkflowError as exc:
        await saga.compensate()
        cause = exc.cause
        return f"compensated: {type(cause).__name__ if cause else None}: {cause}"
    return receipt


@workflow.defn(name="kids.counter")
async def counter(ctx: workflow.WorkflowContext, n: int, until: int, nap_ms: int) -> int:
    """Count to ``until``, one run per step (continue-as-new); ``nap_ms`` = 0: no wait."""
    if nap_ms:
        await ctx.sleep(timedelta(milliseconds=nap_ms))
    if n < until:
        ctx.continue_as_new(n + 1, until, nap_ms)
    return n


@workflow.defn(name="kids.parent_of_counter")
async def parent_of_counter(ctx: workflow.WorkflowContext, child_id: str, until: int) -> int:
    """A child that continues as new: the parent gets its last run's result."""
    result: int = await ctx.execute_child_workflow(
        counter, 0, until, 10, id=child_id, result_type=int
    )
    return result


@workflow.defn(name="kids.twins")
async def twins(ctx: workflow.WorkflowContext, child_id: str) -> str:
    """Start the same child id twice at once: the second start is refused."""
    first = ctx.execute_child_workflow(double, 1, 300, id=child_id, result_type=int)
    second = ctx.execute_child_workflow(double, 2, 300, id=child_id, result_type=int)
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    return " | ".join(
        str(o) if not isinstance(o, BaseException) else f"{type(o).__name__}" for o in outcomes
    )


@workflow.defn(name="kids.handover")
async def handover(ctx: workflow.WorkflowContext, n: int) -> str:
    """Continue as another workflow type (one that a worker may not have yet)."""
    ctx.continue_as_new(n + 1, workflow="kids.later")


@workflow.defn(name="kids.later")
async def later(ctx: workflow.WorkflowContext, n: int) -> str:
    return f"later got {n}"


@workflow.defn(name="kids.waits_for_go")
async def waits_for_go(ctx: workflow.WorkflowContext) -> str:
    """A child that waits for signal ``go``; a cancel ends it CANCELLED."""
    await ctx.wait_signal("go")
    return "went"


@workflow.defn(name="kids.cancels_child")
async def cancels_child(ctx: workflow.WorkflowContext, child_id: str) -> str:
    """Start a child that waits for a signal, then cancel it through its handle."""
    handle = await ctx.start_child_workflow(waits_for_go, id=child_id, result_type=str)
    handle.cancel("changed my mind")
    try:
        return await handle
    except ChildWorkflowError as exc:
        return f"{type(exc).__name__} caused by {type(exc.cause).__name__}"


@workflow.defn(name="kids.waits_on_sleeper")
async def waits_on_sleeper(ctx: workflow.WorkflowContext, child_id: str, policy: str) -> int:
    """Wait on a child that sleeps ten minutes, under parent-close policy ``policy``."""
    result: int = await ctx.execute_child_workflow(
        double, 1, 600_000, id=child_id, result_type=int,
        parent_close_policy=workflow.ParentClosePolicy(policy),
    )
    return result
