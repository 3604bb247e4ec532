"""Sagas for the batch tests: ``batch.waiter`` counts ``poke`` signals until ``finish``."""

from __future__ import annotations

from orchestrator import workflow

QUEUE = "batching"


@workflow.defn(name="batch.waiter")
class Waiter:
    """Waits for ``finish``; returns how many ``poke`` signals it got (and their tags)."""

    def __init__(self) -> None:
        self.pokes: list[str] = []
        self.finished = False

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext, label: str) -> list[str]:
        await ctx.wait_condition(lambda: self.finished)
        return self.pokes

    @workflow.signal(name="poke")
    def poke(self, tag: str) -> None:
        self.pokes.append(tag)

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self.finished = True

    @workflow.query(name="pokes")
    def read_pokes(self) -> list[str]:
        return list(self.pokes)


@workflow.defn(name="batch.other")
class Other(Waiter):
    """The same, under another type (a batch by type must leave it alone)."""
