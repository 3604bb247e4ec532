"""Workflows that sleep, for the scale benchmark (bench/scale_bench.py).

A sleeping execution costs the engine only what it keeps per open run: no activity,
no reply until its timer fires. ``bench/scale_bench.py`` seeds these runs straight
into the history topic too, so their history must stay exactly what this code
decides (the bench checks it against runs started through the client).
"""

from __future__ import annotations

from datetime import timedelta

from orchestrator import workflow

#: how long a sleeper sleeps: far beyond any benchmark, so its timer never fires
SLEEP = timedelta(days=30)


@workflow.defn(name="bench.sleep_30d")
async def sleep_30d(ctx: workflow.WorkflowContext, n: int) -> int:
    """Set one 30-day timer and wait: an open execution that does nothing."""
    await ctx.sleep(SLEEP)
    return n


@workflow.defn(name="bench.sleep_until")
async def sleep_until(ctx: workflow.WorkflowContext, fire_at_ms: int) -> int:
    """Sleep until ``fire_at_ms`` (epoch ms): many of them make a wake-up storm."""
    now_ms = round(ctx.now().timestamp() * 1000)
    if fire_at_ms > now_ms:
        await ctx.sleep(timedelta(milliseconds=fire_at_ms - now_ms))
    return fire_at_ms
