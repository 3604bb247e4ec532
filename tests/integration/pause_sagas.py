"""A saga for the pause tests (``saga worker --sagas``): a step on the task queue that
waits for a gate file, side by side with a timer, then a second step."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path

from orchestrator import activity, workflow

QUEUE = "pausing"
GATE_ENV = "PAUSE_TEST_GATE"
"""The step returns once the file this variable names exists."""


@activity.defn(name="pause.step")
def step(label: str) -> str:
    gate = Path(os.environ[GATE_ENV])
    while not gate.exists():
        time.sleep(0.05)
    return label


@workflow.defn(name="pause.saga")
class PausableSaga:
    """Step one and a timer together, then step two; collects ``note`` signals."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext, timer_s: float) -> list[str]:
        first, _ = await asyncio.gather(
            ctx.execute_activity(
                step, "one", task_queue=QUEUE, start_to_close=timedelta(minutes=5)
            ),
            ctx.sleep(timedelta(seconds=timer_s)),
        )
        self.notes += [first, "woke"]
        second = await ctx.execute_activity(
            step, "two", task_queue=QUEUE, start_to_close=timedelta(minutes=5)
        )
        self.notes.append(second)
        return self.notes

    @workflow.signal(name="note")
    def note(self, text: str) -> None:
        self.notes.append(text)

    @workflow.query(name="notes")
    def read_notes(self) -> list[str]:
        return list(self.notes)


@workflow.defn(name="ops.collector")
class Collector:
    """One step, then collects ``note`` signals until one says ``end``."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext) -> list[str]:
        first = await ctx.execute_activity(
            step, "one", task_queue=QUEUE, start_to_close=timedelta(minutes=5)
        )
        self.notes.append(first)
        await ctx.wait_condition(lambda: "end" in self.notes)
        return self.notes

    @workflow.signal(name="note")
    def note(self, text: str) -> None:
        self.notes.append(text)

    @workflow.query(name="notes")
    def read_notes(self) -> list[str]:
        return list(self.notes)
