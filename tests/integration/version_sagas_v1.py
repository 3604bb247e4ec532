"""Version 1 of the ``ver.pay`` and ``ver.nap`` sagas (tests/integration/test_versions_on_kafka.py).

A worker given this module alone holds version 1 only; given it and
``version_sagas_v2``, it holds both side by side (two modules, one type)."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import workflow

__all__ = ["nap_v1", "pay_v1"]


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
