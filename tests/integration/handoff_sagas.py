"""Sagas for the task-handoff test (orchestrator/worker/task_handoff.py): steps with and
without a start-to-close timeout on one queue, and a step that notes each attempt it
starts in the file ``HANDOFF_RUNS_FILE`` and then waits for the file
``HANDOFF_RELEASE_FILE`` to exist before it returns."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from orchestrator import activity, workflow

QUEUE = "handoff"
#: short, so that an attempt lost with its process is retried quickly
BLOCKING_START_TO_CLOSE = timedelta(seconds=4)
_TIMED = timedelta(seconds=10)  # the longest a handed task may have


@activity.defn(name="handoff.step")
def step(label: str) -> str:
    return f"{label}+"


@activity.defn(name="handoff.untimed")
def untimed(label: str) -> str:
    return f"{label}~"


@activity.defn(name="handoff.blocking")
def blocking(label: str) -> str:
    info = activity.info()
    with Path(os.environ["HANDOFF_RUNS_FILE"]).open("a", encoding="utf-8") as out:
        out.write(f"{info.idempotency_key} {info.attempt}\n")
    release = Path(os.environ["HANDOFF_RELEASE_FILE"])
    while not release.exists():
        time.sleep(0.01)
    return f"{label} released"


@workflow.defn(name="handoff.three_steps")
async def three_steps(ctx: workflow.WorkflowContext, label: str) -> str:
    """Three timed steps, each on the previous one's result."""
    result = label
    for _ in range(3):
        result = await ctx.execute_activity(
            step, result, task_queue=QUEUE, start_to_close=_TIMED
        )
    return result


@workflow.defn(name="handoff.mixed")
async def mixed(ctx: workflow.WorkflowContext, label: str) -> str:
    """A timed step, one without a start-to-close timeout, a timed step."""
    first = await ctx.execute_activity(step, label, task_queue=QUEUE, start_to_close=_TIMED)
    second = await ctx.execute_activity(untimed, first, task_queue=QUEUE)
    return await ctx.execute_activity(step, second, task_queue=QUEUE, start_to_close=_TIMED)


@workflow.defn(name="handoff.stop")
async def stop(ctx: workflow.WorkflowContext, label: str) -> str:
    """As ``handoff.crash``, with a start-to-close timeout no test waits for."""
    first = await ctx.execute_activity(step, label, task_queue=QUEUE, start_to_close=_TIMED)
    return await ctx.execute_activity(blocking, first, task_queue=QUEUE, start_to_close=_TIMED)


@workflow.defn(name="handoff.crash")
async def crash(ctx: workflow.WorkflowContext, label: str) -> str:
    """A timed step (it wakes the worker), then the blocking step."""
    first = await ctx.execute_activity(step, label, task_queue=QUEUE, start_to_close=_TIMED)
    return await ctx.execute_activity(
        blocking, first, task_queue=QUEUE, start_to_close=BLOCKING_START_TO_CLOSE
    )
