"""The ``ops.ship`` saga as the fixed build has it."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import workflow
from tests.integration.build_sagas_bad import QUEUE, pack

__all__ = ["QUEUE", "deliver", "pack", "ship"]


@workflow.defn(name="ops.ship")
async def ship(ctx: workflow.WorkflowContext, label: str) -> str:
    return await ctx.execute_activity(
        pack, label, task_queue=QUEUE, start_to_close=timedelta(minutes=1)
    )


@workflow.defn(name="ops.deliver")
async def deliver(ctx: workflow.WorkflowContext, label: str) -> str:
    return await ctx.execute_activity(
        pack, label, task_queue=QUEUE, start_to_close=timedelta(minutes=1)
    )
