"""A saga for ``saga worker --sagas tests.integration.signed_sagas``: its activity
writes its task token to the file its workflow was given, then completes later."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import activity, workflow


@activity.defn(name="signed.ask")
def ask(path: str) -> str:
    Path(path).write_text(activity.info().task_token, encoding="utf-8")
    raise activity.CompleteAsync


@workflow.defn(name="signed.order")
async def order(ctx: workflow.WorkflowContext, path: str) -> str:
    answer: str = await ctx.execute_activity(ask, path, start_to_close=timedelta(seconds=60))
    return answer
