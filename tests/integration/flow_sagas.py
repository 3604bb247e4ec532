"""A saga for the flow-control test through the engine: two activities on the
flow-controlled queue, with a priority and a fairness key."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import activity, workflow

QUEUE = "flowq"


@activity.defn(name="flow.echo")
def echo(text: str) -> str:
    info = activity.info()
    return f"{text}@{info.attempt}"


@workflow.defn(name="flow.tenant_step")
async def tenant_step(ctx: workflow.WorkflowContext, tenant: str) -> list[str]:
    """One activity per tenant, dispatched on the flow-controlled queue."""
    first = await ctx.execute_activity(
        echo, tenant, task_queue=QUEUE, priority=7, fairness_key=tenant,
        start_to_close=timedelta(seconds=30),
    )
    second = await ctx.execute_activity(
        echo, "again", task_queue=QUEUE, fairness_key=tenant,
        start_to_close=timedelta(seconds=30),
    )
    return [first, second]
