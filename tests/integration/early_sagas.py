"""A one-step saga whose activity notes every attempt it runs in a file (the path in
``EARLY_RUNS_FILE``), for the early-dispatch test: how often did it run, under which key."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from orchestrator import activity, workflow

QUEUE = "early"


@activity.defn(name="early.note")
def note(label: str) -> str:
    info = activity.info()
    with Path(os.environ["EARLY_RUNS_FILE"]).open("a", encoding="utf-8") as out:
        out.write(f"{info.idempotency_key} {info.attempt}\n")
    return f"noted {label}"


@workflow.defn(name="early.one_step")
async def one_step(ctx: workflow.WorkflowContext, label: str) -> str:
    """Start, run one activity on the task queue, answer."""
    return await ctx.execute_activity(
        note, label, task_queue=QUEUE, start_to_close=timedelta(seconds=30)
    )
