"""The saga of the tracing test: three activity steps around a sleep, then a local one."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import activity, workflow

QUEUE = "traced"


@activity.defn(name="traced.double")
async def double(n: int) -> int:
    return n * 2


@workflow.defn(name="traced.steps")
async def steps(ctx: workflow.WorkflowContext, n: int) -> int:
    n = await ctx.execute_activity(double, n, task_queue=QUEUE)
    await ctx.sleep(timedelta(seconds=4))  # the test kills the engine here
    n = await ctx.execute_activity(double, n, task_queue=QUEUE)
    n = await ctx.execute_activity(double, n, task_queue=QUEUE)
    return await ctx.execute_local_activity(double, n)
