"""Workflows the integration tests run in worker processes (``saga worker --sagas``)."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import workflow


@workflow.defn(name="e2e.nap")
async def nap(ctx: workflow.WorkflowContext, label: str, millis: int) -> str:
    """Sleep twice (two durable timers), then answer."""
    await ctx.sleep(timedelta(milliseconds=millis))
    await ctx.sleep(timedelta(milliseconds=millis))
    return f"rested:{label}"
