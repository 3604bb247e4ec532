"""Workflows used by the benchmarks."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import activity, workflow


@workflow.defn(name="bench.noop")
async def noop(ctx: workflow.WorkflowContext, n: int) -> int:
    """Start and complete: measures the engine's fixed cost per execution."""
    return n


@workflow.defn(name="bench.three_step")
async def three_step(ctx: workflow.WorkflowContext, n: int) -> int:
    """Three sequential no-op activities: the peers' reference workload."""
    for step in ("bench.step", "bench.step", "bench.step"):
        n = await ctx.execute_activity(step, n, task_queue="bench", result_type=int)
    return n


@workflow.defn(name="bench.three_step_timed")
async def three_step_timed(ctx: workflow.WorkflowContext, n: int) -> int:
    """The three task-queue steps, each with a start-to-close timeout (10 s, the longest
    a handed task may have): what an engine worker that serves the queue itself may
    hand to its own activity worker."""
    for step in ("bench.step", "bench.step", "bench.step"):
        n = await ctx.execute_activity(
            step, n, task_queue="bench", result_type=int, start_to_close=timedelta(seconds=10)
        )
    return n


@workflow.defn(name="bench.three_step_local")
async def three_step_local(ctx: workflow.WorkflowContext, n: int) -> int:
    """The same three steps as local activities: run by the engine worker in one cycle."""
    for step in ("bench.step", "bench.step", "bench.step"):
        n = await ctx.execute_local_activity(step, n, result_type=int)
    return n


@activity.defn(name="bench.step")
async def step(n: int) -> int:
    """A no-op activity."""
    return n + 1
