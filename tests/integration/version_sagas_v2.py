"""Version 2 of the ``ver.pay`` and ``ver.nap`` sagas: a different shape from version 1
(a timer first), so a version 1 history cannot replay on it."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import workflow

__all__ = ["nap_v2", "pay_v2", "tick_v2"]


@workflow.defn(name="ver.pay", version=2)
async def pay_v2(ctx: workflow.WorkflowContext, label: str) -> str:
    got: list[str] = []
    ctx.set_signal_handler("go", lambda: got.append("go"))
    await ctx.sleep(timedelta(milliseconds=10))
    await ctx.wait_condition(lambda: bool(got))
    return f"v{ctx.info.workflow_version} {label}"


@workflow.defn(name="ver.nap", version=2)
async def nap_v2(ctx: workflow.WorkflowContext, seconds: float) -> str:
    return "v2 woke at once"


@workflow.defn(name="ver.tick", version=2)
async def tick_v2(ctx: workflow.WorkflowContext, count: int) -> str:
    return f"v2 took over at {count} on version {ctx.info.workflow_version}"
