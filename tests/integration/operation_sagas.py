"""Sagas for the kill -9 test of operations (run by ``saga worker`` subprocesses):
team A's ``ops.order`` calls ``billing/charge``, which team B implements with
``ops.charge``, a saga that sleeps and then waits for a signal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrator import activity, workflow


@activity.defn(name="ops.reserve")
async def reserve(order: str) -> str:
    return f"seat-{order}"


@activity.defn(name="ops.release")
async def release(order: str) -> None:
    return None


@workflow.defn(name="ops.order")
async def order(ctx: workflow.WorkflowContext, name: str) -> dict[str, Any]:
    saga = ctx.saga()
    await saga.step(reserve, name, compensate=release, compensate_args=(name,))
    paid: dict[str, Any] = await ctx.execute_operation(
        "payments", "charge", {"order": name}, schedule_to_close=timedelta(minutes=5)
    )
    return paid


@workflow.defn(name="ops.charge")
async def charge(ctx: workflow.WorkflowContext, req: dict[str, Any]) -> dict[str, Any]:
    await ctx.sleep(timedelta(seconds=1))
    got = await ctx.wait_signal("decide", arg_types=(str,))
    assert got is not None
    return {"receipt": f"r-{req['order']}", "approver": got[0]}
