"""A changed build of e2e.nap (one sleep instead of two): replaying old runs must fail."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import workflow


@workflow.defn(name="e2e.nap")
async def nap(ctx: workflow.WorkflowContext, label: str, millis: int) -> str:
    await ctx.execute_activity("e2e.unexpected", label, task_queue="none")
    await ctx.sleep(timedelta(milliseconds=millis))
    return f"rested:{label}"
