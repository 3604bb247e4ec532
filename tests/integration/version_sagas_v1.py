"""Version 1 of the ``ver.pay`` and ``ver.nap`` sagas (tests/integration/test_versions_on_kafka.py).

A worker given this module alone holds version 1 only; given it and
``version_sagas_v2``, it holds both side by side (two modules, one type)."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import workflow

__all__ = ["TickV1", "nap_v1", "pay_v1"]


@workflow.defn(name="ver.pay")
async def pay_v1(ctx: workflow.WorkflowContext, label: str) -> str:
    """Waits for signal ``go``, then answers with the version it ran on."""
    got: list[str] = []
    ctx.set_signal_handler("go", lambda: got.append("go"))
    await ctx.wait_condition(lambda: bool(got))
    return f"v{ctx.info.workflow_version} {label}"


@workflow.defn(name="ver.nap")
async def nap_v1(ctx: workflow.WorkflowContext, seconds: float) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "v1 woke"


@workflow.defn(name="ver.tick")
class TickV1:
    """A long-lived counter: one turn per signal ``tick``, with a declared upgrade point
    after each turn, until it has counted to 10."""

    def __init__(self) -> None:
        self.count = 0
        self.ticks = 0

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext, count: int) -> str:
        self.count = count
        while self.count < 10:
            await ctx.wait_condition(lambda: self.ticks > 0)
            self.ticks -= 1
            self.count += 1
            ctx.upgrade_point(self.count)
        return f"v1 counted to {self.count}"

    @workflow.signal
    def tick(self) -> None:
        self.ticks += 1

    @workflow.query
    def counted(self) -> int:
        return self.count
