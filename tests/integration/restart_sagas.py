"""A one-step saga for the worker restart tests (``saga worker --sagas``): its step runs on
the task queue, so every outcome needs both the engine and an activity worker."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import activity, workflow

QUEUE = "steady"


@activity.defn(name="restart.echo")
async def echo(label: str) -> str:
    return label


@workflow.defn(name="restart.one_step")
async def one_step(ctx: workflow.WorkflowContext, label: str) -> str:
    """Start, run one activity on the task queue, answer."""
    return await ctx.execute_activity(
        echo, label, task_queue=QUEUE, start_to_close=timedelta(seconds=30)
    )
