"""Workflows the integration tests run in worker processes (``saga worker --sagas``)."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import activity, workflow
from orchestrator.exceptions import ApplicationError


@workflow.defn(name="e2e.nap")
async def nap(ctx: workflow.WorkflowContext, label: str, millis: int) -> str:
    """Sleep twice (two durable timers), then answer."""
    await ctx.sleep(timedelta(milliseconds=millis))
    await ctx.sleep(timedelta(milliseconds=millis))
    return f"rested:{label}"


@activity.defn(name="e2e.charge_card")
async def charge_card(card: str) -> str:
    """Refuse every card, for good (no retry)."""
    raise ApplicationError(f"card {card} declined", type="CardDeclined", non_retryable=True)


@workflow.defn(name="e2e.doomed")
async def doomed(ctx: workflow.WorkflowContext, card: str) -> str:
    """Fail with a cause chain: the workflow's error, the activity's, the card's."""
    return await ctx.execute_local_activity(charge_card, card)
