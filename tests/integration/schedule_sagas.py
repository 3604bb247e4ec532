"""Sagas for the schedule tests (``saga worker --sagas``): one that takes a while on a
durable timer, one that answers at once. Neither needs an activity worker."""

from __future__ import annotations

from orchestrator import workflow


@workflow.defn(name="sched.slow")
async def slow(ctx: workflow.WorkflowContext, seconds: float) -> str:
    """Sleep ``seconds`` (a durable timer), then answer with the run's workflow id."""
    await ctx.sleep(seconds)
    return ctx.info.workflow_id


@workflow.defn(name="sched.quick")
async def quick(ctx: workflow.WorkflowContext, label: str) -> str:
    """Answer at once with the label and the workflow id."""
    return f"{label}:{ctx.info.workflow_id}"
