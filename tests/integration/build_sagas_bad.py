"""The ``ops.ship`` saga as a broken build has it: it fails every run after its step."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import activity, workflow
from orchestrator.exceptions import ApplicationError

QUEUE = "shipping"


@activity.defn(name="ops.pack")
def pack(label: str) -> str:
    return f"packed {label}"


@workflow.defn(name="ops.ship")
async def ship(ctx: workflow.WorkflowContext, label: str) -> str:
    await ctx.execute_activity(pack, label, task_queue=QUEUE, start_to_close=timedelta(minutes=1))
    raise ApplicationError("shipping disabled by mistake", non_retryable=True)


@workflow.defn(name="ops.deliver")
async def deliver(ctx: workflow.WorkflowContext, label: str) -> str:
    """The broken build waits a day after packing, a decision the fixed build does not
    make: the fixed build cannot replay these runs (they park when it touches them)."""
    await ctx.execute_activity(pack, label, task_queue=QUEUE, start_to_close=timedelta(minutes=1))
    await ctx.sleep(timedelta(days=1))
    return "late"
